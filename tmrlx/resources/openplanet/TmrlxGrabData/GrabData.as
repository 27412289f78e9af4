/*
 * tmrlx GrabData: streams the driven car's state to tmrlx (and to TMRL's client) over TCP.
 *
 * A server on 127.0.0.1:9000. While a client is connected and a map is being driven, every game
 * frame it writes one record of 11 little-endian float32 (44 bytes), in the order of tmrlx's
 * actor/envs/backends/gamedata.py FIELDS (tests/test_plugin.py checks the labelled Write calls in
 * WriteRecord below against it):
 *   speed, distance, x, y, z, steer, gas, brake (0/1), finished (0/1), gear, rpm
 * Nothing is written in menus, on a loading screen or while the pause menu is open. When the client
 * disconnects, the next one is accepted.
 *
 * OpenPlanet API used:
 *   callbacks   Main() (yieldable loop), OnDestroyed() (frees the port when the plugin unloads)
 *   coroutines  yield(), sleep(ms); logging print(), warn()
 *   Net::Socket Listen(host, port), Accept() (null while nobody is waiting), IsReady(), IsHungUp(),
 *               Write(MemoryBuffer@), Close()
 *   MemoryBuffer(size), Write(float), Seek(pos)
 *   game        GetApp() as CTrackMania: RootMap, LoadProgress.State,
 *               Network.PlaygroundClientScriptAPI.IsInGameMenuDisplayed, CurrentPlayground.GameTerminals;
 *               CGameTerminal: ControlledPlayer, UISequence_Current (SGamePlaygroundUIConfig::EUISequence);
 *               CSmPlayer.ScriptAPI as CSmScriptPlayer: Speed, Distance, Position, InputSteer,
 *               InputGasPedal, InputIsBraking, EngineCurGear, EngineRpm
 *
 * The plugin is not signed by OpenPlanet: it loads only when unsigned plugins are allowed
 * (OpenPlanet's Developer signature mode).
 */

const string HOST = "127.0.0.1";
const uint16 PORT = 9000;
const uint RETRY_MS = 2000;

Net::Socket@ g_server = null;
Net::Socket@ g_client = null;
bool g_warnedBusy = false;

void Main()
{
    while (true) {
        if (g_server is null && !StartServer()) {
            sleep(RETRY_MS);
            continue;
        }
        if (g_client is null) {
            @g_client = g_server.Accept();
            if (g_client !is null) {
                print("tmrlx GrabData: client connected");
            }
        } else if (g_client.IsHungUp()) {
            DropClient("client disconnected");
        } else if (g_client.IsReady()) {
            SendFrame();
        }
        yield();
    }
}

void OnDestroyed()
{
    DropClient("plugin unloaded");
    if (g_server !is null) {
        g_server.Close();
        @g_server = null;
    }
}

// Listens on HOST:PORT; on failure (the port is taken, e.g. by TMRL's plugin) warns once.
bool StartServer()
{
    Net::Socket@ server = Net::Socket();
    if (!server.Listen(HOST, PORT)) {
        if (!g_warnedBusy) {
            warn("tmrlx GrabData: cannot listen on " + HOST + ":" + PORT
                 + " (is TMRL_GrabData or another program using it?); retrying every " + RETRY_MS + " ms");
            g_warnedBusy = true;
        }
        return false;
    }
    @g_server = server;
    g_warnedBusy = false;
    print("tmrlx GrabData: listening on " + HOST + ":" + PORT);
    return true;
}

void DropClient(const string &in why)
{
    if (g_client is null) {
        return;
    }
    g_client.Close();
    @g_client = null;
    print("tmrlx GrabData: " + why + "; waiting for the next client");
}

// The terminal of a map being driven now, or null in menus, on a loading screen or when paused.
CGameTerminal@ DrivingTerminal()
{
    CTrackMania@ app = cast<CTrackMania>(GetApp());
    if (app is null || app.RootMap is null || app.CurrentPlayground is null) {
        return null;
    }
    if (int(app.LoadProgress.State) != 0) {
        return null;
    }
    auto playgroundApi = app.Network.PlaygroundClientScriptAPI;
    if (playgroundApi is null || playgroundApi.IsInGameMenuDisplayed) {
        return null;
    }
    if (app.CurrentPlayground.GameTerminals.Length == 0) {
        return null;
    }
    return app.CurrentPlayground.GameTerminals[0];
}

void SendFrame()
{
    CGameTerminal@ terminal = DrivingTerminal();
    if (terminal is null) {
        return;
    }
    CSmPlayer@ player = cast<CSmPlayer>(terminal.ControlledPlayer);
    if (player is null) {
        return;
    }
    CSmScriptPlayer@ car = cast<CSmScriptPlayer>(player.ScriptAPI);
    if (car is null) {
        return;
    }
    bool finished = terminal.UISequence_Current == SGamePlaygroundUIConfig::EUISequence::Finish;
    MemoryBuffer@ record = MemoryBuffer(0);
    WriteRecord(record, car, finished);
    record.Seek(0);
    if (!g_client.Write(record)) {
        DropClient("write failed");
    }
}

// One record. Every value goes through float() (or is a float literal) so that Write(float) is the
// overload called: an int such as the gear would otherwise be written as an int32.
// Each Write carries its field's name: keep them in the order of gamedata.FIELDS.
void WriteRecord(MemoryBuffer@ out, CSmScriptPlayer@ car, bool finished)
{
    out.Write(float(car.Speed));                    // speed
    out.Write(float(car.Distance));                 // distance
    out.Write(float(car.Position.x));               // x
    out.Write(float(car.Position.y));               // y
    out.Write(float(car.Position.z));               // z
    out.Write(float(car.InputSteer));               // steer
    out.Write(float(car.InputGasPedal));            // gas
    out.Write(car.InputIsBraking ? 1.0f : 0.0f);    // brake
    out.Write(finished ? 1.0f : 0.0f);              // finished
    out.Write(float(car.EngineCurGear));            // gear
    out.Write(float(car.EngineRpm));                // rpm
}
