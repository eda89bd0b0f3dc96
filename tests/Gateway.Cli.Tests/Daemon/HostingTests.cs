using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// `gateway up` as a generic host: it tells a service manager when it is ready and when it stops
/// (sd_notify through Microsoft.Extensions.Hosting.Systemd), and dotnet-counters can watch its
/// meters. Root only; each test builds and removes its own namespaces and processes.
/// </summary>
[Collection("daemon")]
public class HostingTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static void SkipUnlessPossible() => Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("Gateway.sln not found above the test binaries");
    }

    private static string? Receive(Socket socket, TimeSpan timeout)
    {
        socket.ReceiveTimeout = (int)timeout.TotalMilliseconds;
        var buffer = new byte[4096];
        try
        {
            int n = socket.Receive(buffer);
            return Encoding.UTF8.GetString(buffer, 0, n);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            return null;
        }
    }

    [SkippableFact]
    public void UpNotifiesReadyAfterItIsUpAndStoppingOnSigterm()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        // The service manager's end: a datagram socket NOTIFY_SOCKET names (as systemd gives a Type=notify service).
        string path = Path.Combine(Path.GetTempPath(), $"gw-notify-{t.Id}.sock");
        File.Delete(path);
        using var manager = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        manager.Bind(new UnixDomainSocketEndPoint(path));
        try
        {
            string conf = t.TempFile($"{t.A.Interface}.conf", t.A.Config(t.B));
            var process = t.StartProcess(t.A.Ns, $"dotnet {Topology.GatewayDll} up {conf} --interface {t.A.Interface} --metrics off",
                new() { ["NOTIFY_SOCKET"] = path });
            string? ready = Receive(manager, Deadline);
            Assert.True(ready is not null, $"no notification within {Deadline}:\n{t.Logs[process]}");
            Assert.Contains("READY=1", ready);
            // Ready means up: the interface, its routes and the start-up line came first. The line
            // was written to stderr before READY=1 was sent; the harness reads stderr on another
            // thread, so give that reader the time to catch up with what is already in the pipe.
            bool logged = SpinWait.SpinUntil(() => t.Logs[process].ToString().Contains(" up: listening", StringComparison.Ordinal), Deadline);
            Assert.True(logged, $"no up line after READY=1:\n{t.Logs[process]}");
            Assert.Contains(t.A.Interface, t.A.Exec("ip link show"));

            Sh.Run($"kill -TERM {process.Id}");
            string? stopping = Receive(manager, Deadline);
            Assert.True(stopping is not null && stopping.Contains("STOPPING=1", StringComparison.Ordinal), $"after SIGTERM: '{stopping}'\n{t.Logs[process]}");
            Assert.True(process.WaitForExit(Deadline), "gateway up did not exit after SIGTERM");
            process.WaitForExit(); // and its output is read to the end
            Assert.Equal(0, process.ExitCode);
            Assert.Contains($"{t.A.Interface} down", t.Logs[process].ToString());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [SkippableFact]
    public void DotnetCountersWatchesARunningDaemon()
    {
        SkipUnlessPossible();
        string counters = Path.Combine(RepositoryRoot(), ".build", "tools", "dotnet-counters");
        Skip.IfNot(File.Exists(counters), $"needs dotnet-counters at {counters} (scripts/setup.sh installs it)");
        using var t = new Topology();
        t.A.StartGateway(t.B);
        t.B.StartGateway(t.A);
        t.A.WaitForLog(" up: listening");
        t.B.WaitForLog(" up: listening");
        Assert.Contains("3 received", t.A.Exec($"ping -c 3 -i 0.2 -W 3 {t.B.TunnelAddress}", check: false));

        string output = Path.Combine(Path.GetTempPath(), $"gw-counters-{t.Id}.json");
        try
        {
            // The daemon runs in its own network namespace; the diagnostics socket is a file in /tmp, which it shares.
            var start = new ProcessStartInfo(counters)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                ArgumentList = { "collect", "--process-id", t.A.Process!.Id.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    "--counters", "Gateway.Node,Gateway.Policy", "--refresh-interval", "1", "--duration", "00:00:00:05",
                    "--format", "json", "--output", output },
            };
            // Traffic while it collects: 5 s of pings through the tunnel.
            var ping = t.StartProcess(t.A.Ns, $"ping -c 25 -i 0.2 -W 3 {t.B.TunnelAddress}");
            using var collect = Process.Start(start)!;
            var stdout = collect.StandardOutput.ReadToEndAsync();
            var stderr = collect.StandardError.ReadToEndAsync();
            Assert.True(collect.WaitForExit(Deadline), "dotnet-counters did not finish");
            Assert.True(collect.ExitCode == 0, $"dotnet-counters exited {collect.ExitCode}:\n{stdout.Result}{stderr.Result}");
            ping.WaitForExit(60_000);
            string json = File.ReadAllText(output);
            using var document = JsonDocument.Parse(json);
            var events = document.RootElement.GetProperty("Events").EnumerateArray()
                .Select(e => (Provider: e.GetProperty("provider").GetString()!, Name: e.GetProperty("name").GetString()!,
                              Tags: e.GetProperty("tags").GetString()!, Value: e.GetProperty("value").GetDouble()))
                .Where(e => e.Provider == "Gateway.Node" && e.Tags.Contains($"interface={t.A.Interface}", StringComparison.Ordinal))
                .ToList();
            string seen = string.Join("\n", events.Select(e => $"{e.Name} [{e.Tags}] {e.Value}").Distinct().Take(40));
            // The node's instruments under their documented names, with real values: the handshake the first
            // ping made (a gauge, seconds ago), and the peer's bytes sent while the pings ran (a counter, shown as a rate).
            Assert.Contains(events, e => e.Name == "gateway_peer_last_handshake_seconds" && e.Tags.Contains("peer=", StringComparison.Ordinal) && e.Value is > 0 and < 600);
            Assert.True(events.Any(e => e.Name.StartsWith("gateway_peer_tx_bytes_total", StringComparison.Ordinal) && e.Value > 0), seen);
            Assert.Contains(events, e => e.Name.StartsWith("gateway_drop_count_total", StringComparison.Ordinal) && e.Tags.Contains("reason=", StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(output);
        }
    }
}
