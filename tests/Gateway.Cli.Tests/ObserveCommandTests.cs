using System.CommandLine;
using Gateway.Cli.Commands;
using Gateway.Datapath;
using Gateway.Node.Flows;
using Gateway.Node.Tests.Flows;
using Gateway.Policy;

namespace Gateway.Cli.Tests;

public sealed class ObserveCommandTests : IDisposable
{
    // Flows at 13:00:00.001, .002, ... (one millisecond per flow).
    private readonly FlowTestWorld _world = new(start: new DateTimeOffset(2026, 11, 28, 13, 0, 0, TimeSpan.Zero), tick: TimeSpan.FromMilliseconds(1));
    private readonly string _dir;
    private readonly PolicyEngine _engine;

    public ObserveCommandTests()
    {
        _engine = _world.Engine;
        _dir = _world.Directory;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => _world.Dispose();

    private uint Id(string pod) => _world.Id(pod);

    private FlowLog StartLog(string name = "gw0", bool socket = false) => new(_engine.Events, () => _engine.Current, new FlowLogOptions
    {
        NodeName = "node-a",
        FilePath = Path.Combine(_dir, name + FlowLogPaths.FileSuffix),
        SocketPath = socket ? Path.Combine(_dir, name + FlowLogPaths.SocketSuffix) : null,
    });

    private void Flow(string dst, ushort sport, ushort dport) => _engine.Process(FlowTestWorld.Tcp("10.1.0.10", sport, dst, dport), _world.Clock.Tick());

    /// <summary>Three forwarded flows to backend:80 and two drops to db:5432, at 13:00:00.001 + 1 ms each.</summary>
    private string WriteSampleLog(string name = "gw0")
    {
        using var log = StartLog(name);
        Flow("10.2.0.20", 30001, 80);
        Flow("10.2.0.30", 30002, 5432);
        Flow("10.2.0.20", 30003, 80);
        Flow("10.2.0.30", 30004, 5432);
        Flow("10.2.0.20", 30005, 80);
        return log.FilePath!;
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var root = new RootCommand("test");
        foreach (var command in CommandCatalog.All())
        {
            root.Subcommands.Add(command);
        }
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        int code = CliRunner.Run(root, args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void PrintsTheFlowsInHubblesCompactForm()
    {
        string file = WriteSampleLog();
        var (code, output, err) = Run("observe", "--file", file);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        var lines = Lines(output);
        Assert.Equal(5, lines.Length);
        Assert.Equal(
            $"Nov 28 13:00:00.001: default/frontend-1:30001 (ID:{Id("frontend-1")}) -> default/backend-1:80 (ID:{Id("backend-1")}) policy-verdict:default/backend-allow-frontend INGRESS FORWARDED (TCP Flags: SYN)",
            lines[0]);
        Assert.Equal(
            $"Nov 28 13:00:00.002: default/frontend-1:30002 (ID:{Id("frontend-1")}) -> default/db-1:5432 (ID:{Id("db-1")}) policy-verdict:none INGRESS DROPPED (Policy denied)",
            lines[1]);
    }

    [Fact]
    public void TheDocsShowWhatTheCodeWrites()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Gateway.sln")))
        {
            root = root.Parent;
        }
        string docs = File.ReadAllText(Path.Combine(root!.FullName, "docs", "observe.md"));
        string file = WriteSampleLog();
        var json = File.ReadAllLines(file);
        var compact = Lines(Run("observe", "--file", file).Out);
        Assert.Contains(json[0] + "\n", docs, StringComparison.Ordinal);
        Assert.Contains(json[1] + "\n", docs, StringComparison.Ordinal);
        Assert.Contains(compact[0] + "\n", docs, StringComparison.Ordinal);
        Assert.Contains(compact[1] + "\n", docs, StringComparison.Ordinal);
    }

    [Fact]
    public void LastKeepsTheNewestMatchingFlows()
    {
        string file = WriteSampleLog();
        var (_, output, _) = Run("observe", "--file", file, "--last", "2");
        var lines = Lines(output);
        Assert.Equal(2, lines.Length);
        Assert.Contains(":30004 ", lines[0]);
        Assert.Contains(":30005 ", lines[1]);
        (_, output, _) = Run("observe", "--file", file, "--last", "1", "--verdict", "FORWARDED");
        Assert.Contains(":30005 ", Assert.Single(Lines(output)));
        (_, output, _) = Run("observe", "--file", file, "--last", "0");
        Assert.Equal("", output);

        // More than the default 20.
        using (var log = StartLog())
        {
            for (int i = 0; i < 30; i++)
            {
                Flow("10.2.0.20", (ushort)(31000 + i), 80);
            }
        }
        (_, output, _) = Run("observe", "--file", file);
        var all = Lines(output);
        Assert.Equal(ObserveCommand.DefaultLast, all.Length);
        Assert.Contains(":31029 ", all[^1]);
    }

    [Fact]
    public void FiltersByVerdictLabelsAndIdentities()
    {
        string file = WriteSampleLog();
        string[] Observe(params string[] args) => Lines(Run(["observe", "--file", file, .. args]).Out);

        Assert.All(Observe("--verdict", "DROPPED"), l => Assert.EndsWith("DROPPED (Policy denied)", l));
        Assert.Equal(2, Observe("--verdict", "dropped").Length);
        Assert.Equal(5, Observe("--verdict", "DROPPED", "--verdict", "FORWARDED").Length);
        Assert.Empty(Observe("--verdict", "ERROR"));
        Assert.Equal(2, Observe("--to-label", "app=db").Length);
        Assert.Equal(3, Observe("--to-label", "k8s:app=backend").Length);
        Assert.Empty(Observe("--to-label", "reserved:app=backend"));
        Assert.Equal(5, Observe("--from-label", "app=frontend").Length);
        Assert.Empty(Observe("--from-label", "app=backend"));
        Assert.Equal(5, Observe("--to-label", "app=db", "--to-label", "app=backend").Length);
        Assert.Empty(Observe("--to-label", "app=db", "--verdict", "FORWARDED"));
        Assert.Equal(5, Observe("--from-identity", Id("frontend-1").ToString(System.Globalization.CultureInfo.InvariantCulture)).Length);
        var toDb = Observe("--to-identity", Id("db-1").ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(2, toDb.Length);
        Assert.All(toDb, l => Assert.Contains("default/db-1:5432", l));
        Assert.Empty(Observe("--from-identity", Id("db-1").ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Fact]
    public void JsonPrintsTheLinesUnchanged()
    {
        string file = WriteSampleLog();
        var (code, output, _) = Run("observe", "--file", file, "--json", "--verdict", "DROPPED");
        Assert.Equal(0, code);
        var expected = File.ReadAllLines(file).Where(l => l.Contains("\"DROPPED\"", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, expected.Length);
        Assert.Equal(expected, Lines(output));
    }

    [Fact]
    public void MalformedLinesAreSkippedAndCounted()
    {
        string file = WriteSampleLog();
        File.AppendAllText(file, "garbage\n{\"time\":1}\n\n");
        var (code, output, err) = Run("observe", "--file", file);
        Assert.Equal(0, code);
        Assert.Equal(5, Lines(output).Length);
        Assert.Equal("gateway: skipped 2 malformed lines in the flow log\n", err);
        (code, output, err) = Run("observe", "--file", file, "--json");
        Assert.Equal(0, code);
        Assert.Equal(5, Lines(output).Length);
        Assert.Equal("", err);
    }

    [Fact]
    public void FindsTheFlowLogInTheRunFolder()
    {
        WriteSampleLog("gw0");
        var (code, output, _) = Run("observe", "--flow-dir", _dir, "--verdict", "DROPPED");
        Assert.Equal(0, code);
        Assert.Equal(2, Lines(output).Length);

        string gw1 = WriteSampleLog("gw1"); // same flows again: conntrack knows the allowed ones, only the drops are new
        var (code2, _, err) = Run("observe", "--flow-dir", _dir);
        Assert.Equal(2, code2);
        Assert.Equal($"gateway: several flow logs in {_dir} (gw0.flows.jsonl, gw1.flows.jsonl): choose one with --interface\n", err);
        (code2, output, _) = Run("observe", "--flow-dir", _dir, "--interface", "gw1", "--json");
        Assert.Equal(0, code2);
        Assert.Equal(2, File.ReadAllLines(gw1).Length);
        Assert.Equal(File.ReadAllLines(gw1), Lines(output));
    }

    [Theory]
    [InlineData("gateway: no flow log in DIR (is `gateway up` running? or pass --file)", "observe", "--flow-dir", "DIR")]
    [InlineData("gateway: no flow log for that interface (DIR/gwx.flows.jsonl does not exist)", "observe", "--flow-dir", "DIR", "--interface", "gwx")]
    [InlineData("gateway: cannot read flow log DIR/missing.jsonl: no such file", "observe", "--file", "DIR/missing.jsonl")]
    [InlineData("gateway: cannot read flow log DIR: it is a folder", "observe", "--file", "DIR")]
    [InlineData("gateway: --verdict: 'ALLOWED' is not one of FORWARDED, DROPPED, ERROR", "observe", "--file", "DIR/x", "--verdict", "ALLOWED")]
    [InlineData("gateway: --from-label: '=x' is not a label filter: use key=value, key, or source:key=value (e.g. app=frontend, k8s:app=frontend)", "observe", "--file", "DIR/x", "--from-label", "=x")]
    [InlineData("gateway: --last must be 0 or more", "observe", "--file", "DIR/x", "--last", "-1")]
    [InlineData("gateway: --interface cannot be combined with --file or --socket", "observe", "--interface", "gw0", "--file", "DIR/x")]
    [InlineData("gateway: --interface: '../x' is not a valid interface name.", "observe", "--interface", "../x")]
    [InlineData("gateway: cannot connect to flow log socket DIR/none.sock", "observe", "--socket", "DIR/none.sock")]
    public void MistakesAreOneLineAndExitTwo(string expected, params string[] args)
    {
        var (code, output, err) = Run(args.Select(a => a.Replace("DIR", _dir, StringComparison.Ordinal)).ToArray());
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Equal(expected.Replace("DIR", _dir, StringComparison.Ordinal) + "\n", err);
    }

    [Fact]
    public void AnUnparsableIdentityIsAUsageError()
    {
        var (code, _, err) = Run("observe", "--file", "x", "--to-identity", "abc");
        Assert.Equal(2, code);
        Assert.Contains("abc", err);
        Assert.DoesNotContain("   at ", err);
    }

    [SkippableFact]
    public void AnUnreadableLogIsAOneLineError()
    {
        Skip.If(Environment.UserName == "root", "root reads any file");
        string file = WriteSampleLog();
        File.SetUnixFileMode(file, UnixFileMode.None);
        var (code, _, err) = Run("observe", "--file", file);
        Assert.Equal(2, code);
        Assert.Equal($"gateway: cannot read flow log {file}: permission denied\n", err);
    }

    [Fact]
    public void WithoutFollowTheSocketNamesTheFileToRead()
    {
        using var log = StartLog(socket: true);
        Flow("10.2.0.20", 30001, 80);
        Flow("10.2.0.30", 30002, 5432);
        log.Notify();
        Assert.True(SpinWait.SpinUntil(() => log.LinesWritten == 2, TimeSpan.FromSeconds(20)));
        var (code, output, err) = Run("observe", "--socket", log.SocketPath!);
        Assert.Equal("", err);
        Assert.Equal(0, code);
        Assert.Equal(2, Lines(output).Length);
    }

    [Fact]
    public async Task FollowPrintsHistoryThenLiveFlowsFromTheSocketWithoutGapsOrRepeats()
    {
        using var log = StartLog(socket: true);
        Flow("10.2.0.20", 30001, 80);
        Flow("10.2.0.30", 30002, 5432);
        log.Notify();
        Assert.True(SpinWait.SpinUntil(() => log.LinesWritten == 2, TimeSpan.FromSeconds(20)));

        var output = new SharedWriter();
        var error = new StringWriter();
        var request = new ObserveRequest(log.FilePath, null, null, _dir, new FlowFilter(), Last: 10, Follow: true, Json: false);
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(30)); // only against a hang
        var run = ObserveCommand.RunAsync(request, output, error, cancel.Token, maxFlows: 5);
        Assert.True(SpinWait.SpinUntil(() => log.SocketClients == 1 || run.IsCompleted, TimeSpan.FromSeconds(20)));
        Flow("10.2.0.20", 30003, 80);
        Flow("10.2.0.30", 30004, 5432);
        Flow("10.2.0.20", 30005, 80);
        log.Notify();
        Assert.Equal(0, await run);
        Assert.False(cancel.IsCancellationRequested);
        var lines = Lines(output.ToString());
        Assert.Equal(5, lines.Length);
        for (int i = 0; i < 5; i++)
        {
            Assert.Contains($"default/frontend-1:3000{i + 1} ", lines[i]);
        }
        Assert.Equal("", error.ToString());
    }

    [Fact]
    public async Task FollowAppliesFiltersAndStopsOnCancellation()
    {
        using var log = StartLog(socket: true);
        var output = new SharedWriter();
        var filter = new FlowFilter();
        filter.TryAddVerdict("DROPPED");
        var request = new ObserveRequest(null, log.SocketPath, null, _dir, filter, Last: null, Follow: true, Json: true);
        using var cancel = new CancellationTokenSource();
        var run = ObserveCommand.RunAsync(request, output, new StringWriter(), cancel.Token);
        Assert.True(SpinWait.SpinUntil(() => log.SocketClients == 1 || run.IsCompleted, TimeSpan.FromSeconds(20)));
        Flow("10.2.0.20", 30001, 80);
        Flow("10.2.0.30", 30002, 5432);
        log.Notify();
        Assert.True(SpinWait.SpinUntil(() => output.ToString().Contains('\n'), TimeSpan.FromSeconds(20)));
        cancel.Cancel();
        Assert.Equal(0, await run.WaitAsync(TimeSpan.FromSeconds(20)));
        var line = Assert.Single(Lines(output.ToString()));
        Assert.Equal(File.ReadAllLines(log.FilePath!)[1], line);
    }

    [Fact]
    public async Task FollowEndsWhenTheNodeClosesTheSocket()
    {
        var log = StartLog(socket: true);
        var output = new SharedWriter();
        var error = new StringWriter { NewLine = "\n" };
        var request = new ObserveRequest(null, log.SocketPath, null, _dir, new FlowFilter(), Last: null, Follow: true, Json: false);
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(30)); // only against a hang
        var run = ObserveCommand.RunAsync(request, output, error, cancel.Token);
        Assert.True(SpinWait.SpinUntil(() => log.SocketClients == 1 || run.IsCompleted, TimeSpan.FromSeconds(20)));
        Flow("10.2.0.30", 30002, 5432);
        log.Dispose(); // drains the ring to the client, then closes it
        Assert.Equal(0, await run);
        Assert.False(cancel.IsCancellationRequested);
        Assert.Contains(":30002 ", Assert.Single(Lines(output.ToString())));
        Assert.Equal("gateway: the node closed the flow log socket\n", error.ToString());
    }

    [Fact]
    public async Task FollowTailsTheFileWhenThereIsNoSocket()
    {
        string file;
        using (var log = StartLog())
        {
            Flow("10.2.0.20", 30001, 80);
            file = log.FilePath!;
        }
        var output = new SharedWriter();
        var request = new ObserveRequest(file, null, null, _dir, new FlowFilter(), Last: null, Follow: true, Json: false);
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(30)); // only against a hang
        var run = ObserveCommand.RunAsync(request, output, new StringWriter(), cancel.Token, maxFlows: 3);
        Assert.True(SpinWait.SpinUntil(() => output.ToString().Contains('\n'), TimeSpan.FromSeconds(20)));
        using (var log = StartLog())
        {
            Flow("10.2.0.30", 30002, 5432);
            log.Notify();
            Assert.True(SpinWait.SpinUntil(() => log.LinesWritten == 1, TimeSpan.FromSeconds(20)));
            // Half a line, as a reader may see it mid-write: not printed until it is complete.
            File.AppendAllText(file, "{\"time\":\"2026-11-28T13:00:09Z\",");
            File.AppendAllText(file, "\"verdict\":\"ERROR\"}\n");
        }
        Assert.Equal(0, await run);
        Assert.False(cancel.IsCancellationRequested);
        var lines = Lines(output.ToString());
        Assert.Equal(3, lines.Length);
        Assert.Contains(":30001 ", lines[0]);
        Assert.Contains(":30002 ", lines[1]);
        Assert.Equal("Nov 28 13:00:09.000: ? (ID:0) -> ? (ID:0) policy-verdict:none ERROR", lines[2]);
    }

    [Fact]
    public async Task TheRealCommandEndsFollowOnSigtermWithExitZero()
    {
        string file = WriteSampleLog();
        File.AppendAllText(file, "not a flow\n");
        string dll = Path.Combine(AppContext.BaseDirectory, "gateway.dll");
        var start = new System.Diagnostics.ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in (string[])[dll, "observe", "--file", file, "--follow", "--last", "1"])
        {
            start.ArgumentList.Add(a);
        }
        using var process = System.Diagnostics.Process.Start(start)!;
        try
        {
            // The history line shows the signal handlers are in place.
            string? first = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.NotNull(first);
            Assert.Contains(":30005 ", first);
            Assert.Equal(0, Kill(process.Id, 15));
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            string err = await process.StandardError.ReadToEndAsync();
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {err}");
            Assert.Equal("gateway: skipped 1 malformed line in the flow log", err.Trim());
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>A StringWriter the command writes from its task while the test reads it.</summary>
    private sealed class SharedWriter : StringWriter
    {
        private readonly Lock _lock = new();

        public SharedWriter() => NewLine = "\n";

        public override void Write(char value)
        {
            lock (_lock)
            {
                base.Write(value);
            }
        }

        public override void Write(string? value)
        {
            lock (_lock)
            {
                base.Write(value);
            }
        }

        public override void WriteLine(string? value)
        {
            lock (_lock)
            {
                base.WriteLine(value);
            }
        }

        public override string ToString()
        {
            lock (_lock)
            {
                return base.ToString();
            }
        }
    }
}
