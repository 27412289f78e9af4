# tmrlx tasks. Extra arguments pass through: `just learner --batch-size 512` (an argument holding spaces, such as a
# --config dict, is split by the shell: give those to `tmrlx` itself). Works from sh and from PowerShell on Windows.
set windows-shell := ["powershell.exe", "-NoLogo", "-NoProfile", "-Command"]

python := env_var_or_default("PYTHON", "python")

# list the recipes
default:
    @just --list

# route samples and weights between actors and the learner
broker *args:
    {{python}} -m tmrlx broker {{args}}

# train on the samples the broker forwards
learner *args:
    {{python}} -m tmrlx learner {{args}}

# step the environment and send samples
actor *args:
    {{python}} -m tmrlx actor {{args}}

# broker + learner + 2 actors on localhost, training on the built-in simulator
demo *args:
    {{python}} -m tmrlx demo {{args}}

# the whole test suite (slow tests included)
test *args:
    {{python}} -m pytest -q {{args}}

# run a benchmark: just bench broker|learner|actor|sim|load|ratio|learning|playback|profile
bench name *args:
    {{python}} -m bench.{{name}} {{args}}

# lint
lint:
    ruff check .

# type-check (mypy over the installed `tmrlx` layout)
typecheck:
    bash .ci/typecheck
