using System.Diagnostics;
using System.Text;
using Gateway.Crypto;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// Two "hosts" in network namespaces made for one test, joined by a veth pair (the underlay,
/// 192.168.241.1 and .2 inside those namespaces only). Each side runs either `gateway up` or
/// wireguard-go with tunnel addresses 10.241.0.1 and .2. Everything is removed on Dispose.
/// </summary>
internal sealed class Topology : IDisposable
{
    private static int s_counter;
    private readonly List<Process> _processes = [];
    private readonly List<string> _files = [];

    public Topology()
    {
        int n = Interlocked.Increment(ref s_counter);
        Id = $"{Environment.ProcessId % 100000}{n}";
        A = new Side(this, "a", $"gwa{Id}", "192.168.241.1", "10.241.0.1");
        B = new Side(this, "b", $"gwb{Id}", "192.168.241.2", "10.241.0.2");
        try
        {
            foreach (var side in new[] { A, B })
            {
                Sh.Run($"ip netns add {side.Ns}");
                Sh.Run($"ip -n {side.Ns} link set lo up");
            }
            Sh.Run($"ip link add va{Id} netns {A.Ns} type veth peer name vb{Id} netns {B.Ns}");
            Sh.Run($"ip -n {A.Ns} addr add {A.Underlay}/24 dev va{Id} && ip -n {A.Ns} link set va{Id} up");
            Sh.Run($"ip -n {B.Ns} addr add {B.Underlay}/24 dev vb{Id} && ip -n {B.Ns} link set vb{Id} up");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Id { get; }
    public Side A { get; }
    public Side B { get; }

    public static string GatewayDll => Path.Combine(AppContext.BaseDirectory, "gateway.dll");

    public string TempFile(string name, string content)
    {
        string path = Path.Combine(Path.GetTempPath(), $"gw-it-{Id}-{name}");
        File.WriteAllText(path, content);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _files.Add(path);
        return path;
    }

    /// <summary>
    /// Runs iperf3 from A to B's tunnel address (server in B, one test) and returns its JSON report
    /// once it contains <paramref name="complete"/>; a refused connect while the server starts
    /// (another process) is retried.
    /// </summary>
    public string Iperf(string clientOptions, string complete = "\"sum_received\"")
    {
        var server = StartProcess(B.Ns, $"iperf3 -s -1 -B {B.TunnelAddress}");
        string json = "";
        for (int attempt = 0; attempt < 50 && !json.Contains(complete, StringComparison.Ordinal); attempt++)
        {
            json = A.Exec($"iperf3 -c {B.TunnelAddress} {clientOptions} -J", check: false);
            if (!json.Contains(complete, StringComparison.Ordinal))
            {
                Thread.Sleep(100); // iperf3 -s not listening yet
            }
        }
        server.WaitForExit(10_000);
        Assert.True(json.Contains(complete, StringComparison.Ordinal), $"iperf3 did not complete: {json}");
        return json;
    }

    internal Process StartProcess(string ns, string command, Dictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo("ip", $"netns exec {ns} {command}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (k, v) in env ?? [])
        {
            psi.Environment[k] = v;
        }
        var process = Process.Start(psi)!;
        var log = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _processes.Add(process);
        Logs[process] = log;
        return process;
    }

    public Dictionary<Process, StringBuilder> Logs { get; } = [];

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            try
            {
                if (!p.HasExited)
                {
                    p.Kill(entireProcessTree: true);
                    p.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            p.Dispose();
        }
        foreach (var side in new[] { A, B })
        {
            Sh.Run($"ip netns del {side.Ns}", check: false);
            side.Dispose();
        }
        foreach (var file in _files)
        {
            File.Delete(file);
        }
    }

    internal sealed class Side : IDisposable
    {
        private readonly Topology _topology;

        public Side(Topology topology, string label, string ns, string underlay, string tunnel)
        {
            _topology = topology;
            Ns = ns;
            Underlay = underlay;
            TunnelAddress = tunnel;
            Interface = $"wg{label}{topology.Id}";
            PrivateKey = WireGuardKey.GeneratePrivate();
            PublicKey = PrivateKey.DerivePublic();
        }

        public string Ns { get; }
        public string Underlay { get; }
        public string TunnelAddress { get; }
        public string Interface { get; }
        public WireGuardKey PrivateKey { get; private set; }
        public WireGuardKey PublicKey { get; private set; }
        public Process? Process { get; private set; }
        public int Port { get; set; } = 51820;

        public string UapiSocket => $"/var/run/wireguard/{Interface}.sock";

        public string Exec(string command, bool check = true, int timeoutMs = 60_000) =>
            Sh.Run($"ip netns exec {Ns} {command}", check, timeoutMs);

        public string Config(Side peer, bool endpoint = true, string extraInterface = "", string extraPeer = "") =>
            $"""
            [Interface]
            PrivateKey = {PrivateKey.ToBase64()}
            ListenPort = {Port}
            Address = {TunnelAddress}/24
            {extraInterface}

            [Peer]
            PublicKey = {peer.PublicKey.ToBase64()}
            AllowedIPs = {peer.TunnelAddress}/32
            {(endpoint ? $"Endpoint = {peer.Underlay}:{peer.Port}" : "")}
            {extraPeer}
            """;

        /// <summary>Runs `gateway up` here with a config naming <paramref name="peer"/>.</summary>
        public string StartGateway(Side peer, bool endpoint = true, string extraInterface = "", string extraPeer = "", string metrics = "off", string options = "")
        {
            string conf = _topology.TempFile($"{Interface}.conf", Config(peer, endpoint, extraInterface, extraPeer));
            Process = _topology.StartProcess(Ns, $"dotnet {GatewayDll} up {conf} --interface {Interface} --metrics {metrics} {options}");
            WaitForSocket();
            return conf;
        }

        /// <summary>Runs stock wireguard-go here (the build <paramref name="version"/> names, see
        /// <see cref="WireGuardGoBuilds"/>), configured with `wg`.</summary>
        public void StartWireguardGo(Side peer, bool endpoint = true, string version = WireGuardGoBuilds.Bookworm)
        {
            string binary = WireGuardGoBuilds.PathOf(version);
            Skip.IfNot(File.Exists(binary), $"needs wireguard-go {version} at {binary} (scripts/setup.sh installs it)");
            Process = _topology.StartProcess(Ns, $"{binary} -f {Interface}", new() { ["WG_PROCESS_FOREGROUND"] = "1" });
            WaitForSocket();
            string key = _topology.TempFile($"{Interface}.key", PrivateKey.ToBase64() + "\n");
            Exec($"wg set {Interface} listen-port {Port} private-key {key} peer {peer.PublicKey.ToBase64()} allowed-ips {peer.TunnelAddress}/32" +
                 (endpoint ? $" endpoint {peer.Underlay}:{peer.Port}" : ""));
            Exec($"ip addr add {TunnelAddress}/24 dev {Interface}");
            Exec($"ip link set {Interface} up");
        }

        private void WaitForSocket()
        {
            var watch = Stopwatch.StartNew();
            // Waiting for another process to come up, not for protocol time.
            while (!File.Exists(UapiSocket))
            {
                if (Process!.HasExited || watch.Elapsed > TimeSpan.FromSeconds(30))
                {
                    throw new InvalidOperationException($"{Interface} did not come up: {_topology.Logs[Process]}");
                }
                Thread.Sleep(20);
            }
        }

        public void Stop()
        {
            if (Process is { HasExited: false } p)
            {
                Sh.Run($"kill -TERM {p.Id}", check: false);
                if (!p.WaitForExit(10_000))
                {
                    p.Kill(entireProcessTree: true);
                }
            }
        }

        public string Log => Process is null ? "" : _topology.Logs[Process].ToString();

        /// <summary>Waits until the process has logged <paramref name="text"/> (another process acting,
        /// not protocol time; bounded against hangs).</summary>
        public void WaitForLog(string text)
        {
            var watch = Stopwatch.StartNew();
            while (!Log.Contains(text, StringComparison.Ordinal))
            {
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"'{text}' never appeared in the log:\n{Log}");
                Thread.Sleep(20);
            }
        }

        public void ReplaceKey()
        {
            PrivateKey.Dispose();
            PublicKey.Dispose();
            PrivateKey = WireGuardKey.GeneratePrivate();
            PublicKey = PrivateKey.DerivePublic();
        }

        public void Dispose()
        {
            PrivateKey.Dispose();
            PublicKey.Dispose();
        }
    }
}

/// <summary>
/// The wireguard-go builds the interop tests run against: Debian bookworm's 0.0.20220316
/// (/usr/bin/wireguard-go) and bookworm-backports' 0.0.20231211 (TUN GRO, UDP GSO/GRO), which
/// scripts/setup.sh unpacks into a private directory.
/// </summary>
internal static class WireGuardGoBuilds
{
    public const string Bookworm = "0.0.20220316";
    public const string Backports = "0.0.20231211";

    public static string PathOf(string version) => version switch
    {
        Bookworm => "/usr/bin/wireguard-go",
        Backports => "/opt/wireguard-go-20231211/usr/bin/wireguard-go",
        _ => throw new ArgumentException($"unknown wireguard-go build {version}", nameof(version)),
    };
}
