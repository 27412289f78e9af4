"""TMRL 0.7.1's way, in plain PyTorch: the same-machine reference of `bench.learner` and `bench.actor`.

The issues quote TMRL figures from another (faster) machine; these builders re-create TMRL's networks
(lidar MLP, VanillaCNN), its SAC and REDQ `train(batch)` steps, its per-sample Python replay sampling
and its worker's batch-1 `act_` so the benches time TMRL and tmrlx on the same cores in the same run.
Each builder returns a zero-argument callable (one TMRL call, blocking) for the bench's own timer.
torch runs with its default thread count (`torch.get_num_threads()`: all cores, 2 on our box), float32, CPU.
torch is optional (`pip install -e .[bench]`): `available()` says whether it imports.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

try:
    import torch
    from torch import nn

    Module: type = nn.Module
except ImportError:  # the benches then omit the TMRL keys; the classes below are defined but never built
    torch = None
    Module = object

INSTALL_HINT = "torch is not installed: `pip install -e .[bench]` (torch==2.13.0, CPU) to measure TMRL's reference"
LIDAR_PARTS = (1, 76, 3, 3)  # speed, 4 x 19 lidar, two previous actions: TMRL's 83 MLP inputs
CNN_SCALARS = (1, 1, 1)  # speed, gear, rpm
ACT_DIM, HIDDEN, IMG = 3, (256, 256), (4, 64, 64)
# TMRL's defaults; Adam betas from the config are never applied (a TMRL bug), so torch's (0.9, 0.999)
LR_ACTOR, LR_CRITIC, GAMMA, POLYAK, ALPHA = 1e-5, 5e-5, 0.995, 0.995, 0.01


def available() -> bool:
    return torch is not None


def threads() -> int:
    return torch.get_num_threads()


def mlp(sizes: Sequence[int], out_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or out_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VanillaCNN(Module):
    """TMRL's image trunk + MLP: convs on the 4-frame history, concat speed, gear, rpm, actions."""

    def __init__(self, q_net: bool):
        super().__init__()
        self.q_net = q_net
        self.convs = nn.Sequential(nn.Conv2d(4, 64, 8, 2), nn.ReLU(), nn.Conv2d(64, 64, 4, 2), nn.ReLU(),
                                   nn.Conv2d(64, 128, 4, 2), nn.ReLU(), nn.Conv2d(128, 128, 4, 2), nn.ReLU())
        n_in = 128 + sum(CNN_SCALARS) + 2 * ACT_DIM + (ACT_DIM if q_net else 0)
        self.mlp = mlp([n_in, *HIDDEN, 1] if q_net else [n_in, *HIDDEN], out_relu=False)

    def forward(self, x: tuple) -> torch.Tensor:
        speed, gear, rpm, images, *acts = x
        feats = self.convs(images).flatten(1)
        return self.mlp(torch.cat((speed, gear, rpm, feats, *acts), -1))


class Actor(Module):
    """TMRL's squashed Gaussian actor (`SquashedGaussianMLPActor` / `SquashedGaussianVanillaCNNActor`)."""

    def __init__(self, cnn: bool):
        super().__init__()
        self.cnn = cnn
        self.net = VanillaCNN(q_net=False) if cnn else mlp([sum(LIDAR_PARTS), *HIDDEN], out_relu=True)
        self.mu_layer = nn.Linear(HIDDEN[-1], ACT_DIM)
        self.log_std_layer = nn.Linear(HIDDEN[-1], ACT_DIM)

    def forward(self, obs: tuple, test: bool = False, with_logprob: bool = True):
        net_out = self.net(obs) if self.cnn else self.net(torch.cat([o.flatten(1) for o in obs], -1))
        mu = self.mu_layer(net_out)
        std = torch.exp(torch.clamp(self.log_std_layer(net_out), -20, 2))
        dist = torch.distributions.Normal(mu, std)
        u = mu if test else dist.rsample()
        logp = None
        if with_logprob:
            logp = dist.log_prob(u).sum(axis=-1)
            logp -= (2 * (np.log(2) - u - nn.functional.softplus(-2 * u))).sum(axis=1)
        return torch.tanh(u), logp

    def act_(self, obs: tuple, test: bool = False) -> np.ndarray:
        """What TMRL's worker calls every step: collate a batch of one, no_grad forward, back to NumPy."""
        with torch.no_grad():
            a, _ = self.forward(collate([obs]), test, False)
            return a.squeeze().cpu().numpy()


class QFunction(Module):
    def __init__(self, cnn: bool):
        super().__init__()
        self.cnn = cnn
        self.net = VanillaCNN(q_net=True) if cnn else mlp([sum(LIDAR_PARTS) + ACT_DIM, *HIDDEN, 1], out_relu=False)

    def forward(self, obs: tuple, act: torch.Tensor) -> torch.Tensor:
        if self.cnn:
            return self.net((*obs, act)).squeeze(-1)
        return self.net(torch.cat([*(o.flatten(1) for o in obs), act], -1)).squeeze(-1)


def collate(batch: list) -> object:
    """TMRL's `collate_torch`: recursive over tuples, NumPy arrays -> tensors stacked on a new axis 0."""
    elem = batch[0]
    if isinstance(elem, torch.Tensor):
        return torch.stack(batch, 0)
    if isinstance(elem, np.ndarray):
        return collate([torch.from_numpy(b) for b in batch])
    if isinstance(elem, (tuple, list)):
        return type(elem)(collate(list(s)) for s in zip(*batch))
    return torch.from_numpy(np.array(batch))


class Agent:
    """TMRL's SpinupSacAgent (n=2) or REDQSACAgent (n critics, m in the target, g critic updates per policy update)."""

    def __init__(self, cnn: bool, n: int = 2, m: int = 2, g: int = 1):
        self.n, self.m, self.g, self.redq = n, m, g, n > 2 or g > 1
        self.actor = Actor(cnn)
        self.qs = nn.ModuleList([QFunction(cnn) for _ in range(n)])
        self.qs_targ = nn.ModuleList([QFunction(cnn) for _ in range(n)])
        self.qs_targ.load_state_dict(self.qs.state_dict())
        for p in self.qs_targ.parameters():
            p.requires_grad = False
        self.pi_optimizer = torch.optim.Adam(self.actor.parameters(), lr=LR_ACTOR)
        self.q_optimizer = torch.optim.Adam(self.qs.parameters(), lr=LR_CRITIC)
        self.i_update = 0

    def train(self, batch: tuple) -> dict:
        return self._train_redq(batch) if self.redq else self._train_sac(batch)

    def _polyak(self) -> None:
        with torch.no_grad():
            for p, p_targ in zip(self.qs.parameters(), self.qs_targ.parameters()):
                p_targ.data.mul_(POLYAK)
                p_targ.data.add_((1 - POLYAK) * p.data)

    def _train_sac(self, batch: tuple) -> dict:
        o, a, r, o2, d, _ = batch
        pi, logp_pi = self.actor(o)
        q1, q2 = (q(o, a) for q in self.qs)
        with torch.no_grad():
            a2, logp_a2 = self.actor(o2)
            q_pi_targ = torch.min(*(q(o2, a2) for q in self.qs_targ))
            backup = r + GAMMA * (1 - d) * (q_pi_targ - ALPHA * logp_a2)
        loss_q = (((q1 - backup) ** 2).mean() + ((q2 - backup) ** 2).mean()) / 2
        self.q_optimizer.zero_grad()
        loss_q.backward()
        self.q_optimizer.step()
        self.qs.requires_grad_(False)
        q_pi = torch.min(*(q(o, pi) for q in self.qs))
        loss_pi = (ALPHA * logp_pi - q_pi).mean()
        self.pi_optimizer.zero_grad()
        loss_pi.backward()
        self.pi_optimizer.step()
        self.qs.requires_grad_(True)
        self._polyak()
        return {"loss_actor": loss_pi.detach().item(), "loss_critic": loss_q.detach().item()}

    def _train_redq(self, batch: tuple) -> dict:
        o, a, r, o2, d, _ = batch
        self.i_update += 1
        update_policy = self.i_update % self.g == 0
        if update_policy:
            pi, logp_pi = self.actor(o)
        with torch.no_grad():
            a2, logp_a2 = self.actor(o2)
            idxs = np.random.choice(self.n, self.m, replace=False)
            min_q = torch.stack([self.qs_targ[i](o2, a2) for i in idxs], -1).min(dim=1, keepdim=True)[0]
            backup = (r.unsqueeze(-1) + GAMMA * (1 - d.unsqueeze(-1)) * (min_q - ALPHA * logp_a2.unsqueeze(-1)))
        q_cat = torch.stack([q(o, a) for q in self.qs], -1)
        loss_q = nn.functional.mse_loss(q_cat, backup.expand((-1, self.n)))
        self.q_optimizer.zero_grad()
        loss_q.backward()
        out = {"loss_critic": loss_q.detach().item()}
        if update_policy:
            self.qs.requires_grad_(False)
            ave_q = torch.stack([q(o, pi) for q in self.qs], -1).mean(dim=1, keepdim=True)
            loss_pi = (ALPHA * logp_pi - ave_q).mean()
            self.pi_optimizer.zero_grad()
            loss_pi.backward()
            self.qs.requires_grad_(True)
            out["loss_actor"] = loss_pi.detach().item()
        self.q_optimizer.step()
        if update_policy:
            self.pi_optimizer.step()
        self._polyak()
        return out


class LidarMemory:
    """TMRL's `MemoryTMLidar`: Python lists of per-step entries, each transition rebuilt per sample in Python."""

    def __init__(self, rows: int, batch_size: int, seed: int = 0, hist: int = 4, act_buf_len: int = 2):
        rng = np.random.default_rng(seed)
        self.batch_size, self.hist, self.act_buf_len = batch_size, hist, act_buf_len
        self.min_samples = max(hist, act_buf_len)
        self.start_imgs_offset, self.start_acts_offset = self.min_samples - hist, self.min_samples - act_buf_len
        self.actions = list(rng.uniform(-1, 1, (rows, ACT_DIM)).astype(np.float32))
        self.speeds = list(rng.random((rows, 1), dtype=np.float32))
        self.lidar = list(rng.random((rows, 19), dtype=np.float32))
        self.eoes = list(rng.random(rows) < 0.002)
        self.rewards = list(rng.random(rows).astype(np.float32))
        self.terminated, self.truncated = list(np.array(self.eoes)), [False] * rows
        self.infos: list[dict] = [{} for _ in range(rows)]

    def __len__(self) -> int:
        return len(self.actions) - self.min_samples - 1

    def get_transition(self, item: int) -> tuple:
        if self.eoes[item + self.min_samples - 1]:
            item = item + 1 if item == 0 or random.random() < 0.5 and item < len(self) - 1 else item - 1
        idx_last, idx_now = item + self.min_samples - 1, item + self.min_samples
        acts = self.actions[item + self.start_acts_offset:item + self.start_acts_offset + self.act_buf_len + 1]
        last_act_buf, new_act_buf = acts[:-1], acts[1:]
        imgs = np.stack(self.lidar[item + self.start_imgs_offset:item + self.start_imgs_offset + self.hist + 1])
        imgs_last, imgs_new = imgs[:-1], imgs[1:]
        last_eoes = self.eoes[idx_now - self.min_samples:idx_now]
        eoe = next((i for i in reversed(range(len(last_eoes))) if last_eoes[i]), None)
        if eoe is not None:
            replace_hist_before_eoe(new_act_buf, eoe - self.start_acts_offset - 1)
            replace_hist_before_eoe(last_act_buf, eoe - self.start_acts_offset)
            replace_hist_before_eoe(imgs_new, eoe - self.start_imgs_offset - 1)
            replace_hist_before_eoe(imgs_last, eoe - self.start_imgs_offset)
        return ((self.speeds[idx_last], imgs_last.flatten(), *last_act_buf), self.actions[idx_now],
                np.float32(self.rewards[idx_now]), (self.speeds[idx_now], imgs_new.flatten(), *new_act_buf),
                self.terminated[idx_now], self.truncated[idx_now], self.infos[idx_now])

    def sample(self) -> tuple:
        """TMRL's `Memory.sample`: batch_size Python `get_transition` calls, then `collate_torch`."""
        batch = [self.get_transition(random.randint(0, len(self) - 1)) for _ in range(self.batch_size)]
        o, a, r, o2, d, t, _ = zip(*batch)
        return (collate(list(o)), collate(list(a)), collate(list(r)), collate(list(o2)),
                collate(list(d)).float(), collate(list(t)).float())


def replace_hist_before_eoe(hist, eoe_idx_in_hist: int) -> None:
    """TMRL: entries of a history before an episode's end are replaced by the first entry after it."""
    last_idx = len(hist) - 1
    if eoe_idx_in_hist < last_idx:
        for i in range(max(eoe_idx_in_hist + 1, 0)):
            hist[i] = hist[eoe_idx_in_hist + 1]


def random_batch(cnn: bool, batch_size: int, seed: int = 0) -> tuple:
    """A collated training batch (o, a, r, o2, terminated, truncated) of TMRL's shapes, float32."""
    g = torch.Generator().manual_seed(seed)

    def obs():
        if cnn:
            return (*(torch.rand(batch_size, k, generator=g) for k in CNN_SCALARS), torch.rand(batch_size, *IMG, generator=g),
                    *(torch.rand(batch_size, ACT_DIM, generator=g) for _ in range(2)))
        return tuple(torch.rand(batch_size, k, generator=g) for k in LIDAR_PARTS)

    zeros = torch.zeros(batch_size)
    return obs(), torch.rand(batch_size, ACT_DIM, generator=g) * 2 - 1, torch.rand(batch_size, generator=g), obs(), zeros, zeros


def train_call(cnn: bool, batch_size: int, redq: bool = False, with_sampling: bool = False) -> Callable[[], object]:
    """One TMRL trainer iteration: `agent.train(batch)` on a fixed batch, or on `memory.sample()` each call."""
    torch.manual_seed(0)
    agent = Agent(cnn, *((10, 2, 20) if redq else (2, 2, 1)))
    if with_sampling:
        memory = LidarMemory(20_000, batch_size)
        return lambda: agent.train(memory.sample())
    batch = random_batch(cnn, batch_size)
    return lambda: agent.train(batch)


def worker_act(cnn: bool, seed: int = 0) -> Callable[[], np.ndarray]:
    """TMRL's worker step: `actor.act_(obs)` on one raw observation tuple (stochastic action, as in training)."""
    torch.manual_seed(seed)
    actor = Actor(cnn)
    rng = np.random.default_rng(seed)
    if cnn:
        obs = (*(rng.random(k, dtype=np.float32) for k in CNN_SCALARS), rng.random(IMG, dtype=np.float32),
               *(rng.uniform(-1, 1, ACT_DIM).astype(np.float32) for _ in range(2)))
    else:
        obs = tuple(rng.random(k, dtype=np.float32) for k in LIDAR_PARTS)
    return lambda: actor.act_(obs)
