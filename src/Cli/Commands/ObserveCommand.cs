using System.CommandLine;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Gateway.Node.Flows;

namespace Gateway.Cli.Commands;

/// <summary>What `gateway observe` was asked for, after parsing.</summary>
internal sealed record ObserveRequest(
    string? File, string? Socket, string? Interface, string Directory, FlowFilter Filter, int? Last, bool Follow, bool Json);

/// <summary>
/// `gateway observe`: the node's flow log, in the spirit of `hubble observe`. Prints the last N
/// matching flows from the JSON-lines file, then with --follow keeps printing new ones, from
/// the live socket when the node serves one, else by tailing the file, until Ctrl+C.
/// </summary>
internal static class ObserveCommand
{
    public const int DefaultLast = 20;

    private static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan TailPoll = TimeSpan.FromMilliseconds(200);

    public static Command Create()
    {
        var file = new Option<string?>("--file") { Description = "Flow log file (JSON lines) to read." };
        var socket = new Option<string?>("--socket") { Description = "Flow log socket of a running node (for --follow; history comes from the file it names)." };
        var iface = new Option<string?>("--interface", "-i") { Description = $"Read the flow log of this interface ({FlowLogPaths.DefaultDirectory}/IFACE{FlowLogPaths.FileSuffix})." };
        var verdict = new Option<string[]>("--verdict") { Description = "Only flows with this verdict: FORWARDED, DROPPED or ERROR (repeat for several)." };
        var fromLabel = new Option<string[]>("--from-label") { Description = "Only flows from an endpoint with these labels: k=v[,k2=v2] (source prefix optional, e.g. k8s:app=frontend). Repeat for OR." };
        var toLabel = new Option<string[]>("--to-label") { Description = "Only flows to an endpoint with these labels (as --from-label)." };
        var fromIdentity = new Option<uint[]>("--from-identity") { Description = "Only flows from this security identity (repeat for OR)." };
        var toIdentity = new Option<uint[]>("--to-identity") { Description = "Only flows to this security identity (repeat for OR)." };
        var last = new Option<int?>("--last") { Description = $"Print the last N matching flows first (default {DefaultLast}; 0 with --follow prints only new flows)." };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new flows until interrupted." };
        var json = new Option<bool>("--json") { Description = "Print the JSON lines unchanged." };
        var dir = new Option<string>("--flow-dir")
        {
            Description = "Folder of the flow logs.",
            DefaultValueFactory = _ => FlowLogPaths.DefaultDirectory,
            Hidden = true,
        };
        var command = new Command("observe", "Show the node's flows (verdicts, identities, labels, drop reasons), like `hubble observe`.")
        {
            file, socket, iface, verdict, fromLabel, toLabel, fromIdentity, toIdentity, last, follow, json, dir,
        };
        command.SetAction(async (parse, cancel) =>
        {
            var filter = new FlowFilter();
            foreach (var v in parse.GetValue(verdict) ?? [])
            {
                if (!filter.TryAddVerdict(v))
                {
                    throw new CliException($"--verdict: '{v}' is not one of {string.Join(", ", FlowFilter.VerdictNames)}");
                }
            }
            foreach (var l in parse.GetValue(fromLabel) ?? [])
            {
                if (!filter.TryAddFromLabel(l, out var error))
                {
                    throw new CliException("--from-label: " + error);
                }
            }
            foreach (var l in parse.GetValue(toLabel) ?? [])
            {
                if (!filter.TryAddToLabel(l, out var error))
                {
                    throw new CliException("--to-label: " + error);
                }
            }
            foreach (var id in parse.GetValue(fromIdentity) ?? [])
            {
                filter.AddFromIdentity(id);
            }
            foreach (var id in parse.GetValue(toIdentity) ?? [])
            {
                filter.AddToIdentity(id);
            }
            var request = new ObserveRequest(
                parse.GetValue(file), parse.GetValue(socket), parse.GetValue(iface), parse.GetValue(dir)!,
                filter, parse.GetValue(last), parse.GetValue(follow), parse.GetValue(json));
            // Ctrl+C (and SIGTERM) end --follow normally: the malformed-line note is still printed
            // and the exit code is 0, as for hubble observe. The runner invokes synchronously,
            // which does not hook the signals itself.
            using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            void Stop(PosixSignalContext context)
            {
                context.Cancel = true;
                interrupt.Cancel();
            }
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            return await RunAsync(request, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error, interrupt.Token).ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>
    /// Runs the command. <paramref name="maxFlows"/> ends it after that many printed flows (tests
    /// use it, with the token, to stop --follow without a signal).
    /// </summary>
    internal static async Task<int> RunAsync(ObserveRequest request, TextWriter output, TextWriter error, CancellationToken cancel, int maxFlows = int.MaxValue)
    {
        if (request.Last is < 0)
        {
            throw new CliException("--last must be 0 or more");
        }
        var (file, socketPath) = ResolveSources(request);
        int last = request.Last ?? DefaultLast;
        if (file is not null && Directory.Exists(file))
        {
            throw new CliException($"cannot read flow log {file}: it is a folder");
        }
        var printer = new Printer(request, output, maxFlows);
        try
        {
            if (request.Follow && socketPath is not null && FlowLogReader.TryConnect(socketPath) is { } socket)
            {
                using (socket)
                {
                    if (await FollowSocketAsync(socket, file, last, printer, cancel).ConfigureAwait(false))
                    {
                        error.WriteLine("gateway: the node closed the flow log socket");
                    }
                }
            }
            else if (request.Follow)
            {
                if (file is null)
                {
                    throw new CliException($"cannot connect to flow log socket {socketPath}");
                }
                long end = PrintHistory(file, -1, last, printer);
                if (!printer.Done)
                {
                    await FlowLogReader.TailAsync(file, end, printer.Live, TailPoll, cancel).ConfigureAwait(false);
                }
            }
            else
            {
                if (file is null)
                {
                    file = HistoryFileFromSocket(socketPath!);
                }
                PrintHistory(file, -1, last, printer);
            }
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            // Interrupted: a normal end of --follow.
        }
        catch (FileNotFoundException)
        {
            throw new CliException($"cannot read flow log {file}: no such file");
        }
        catch (DirectoryNotFoundException)
        {
            throw new CliException($"cannot read flow log {file}: no such file");
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliException($"cannot read flow log {file}: permission denied");
        }
        catch (IOException e)
        {
            throw new CliException($"cannot read flow log {file}: {e.Message}");
        }
        if (printer.Malformed > 0 && !request.Json)
        {
            error.WriteLine($"gateway: skipped {printer.Malformed} malformed line{(printer.Malformed == 1 ? "" : "s")} in the flow log");
        }
        return 0;
    }

    /// <summary>Which file and socket to read, from the options or by looking in the flow log folder.</summary>
    private static (string? File, string? Socket) ResolveSources(ObserveRequest r)
    {
        if (r.Interface is not null)
        {
            if (r.File is not null || r.Socket is not null)
            {
                throw new CliException("--interface cannot be combined with --file or --socket");
            }
            try
            {
                return Existing(FlowLogPaths.FileFor(r.Interface, r.Directory), FlowLogPaths.SocketFor(r.Interface, r.Directory));
            }
            catch (ArgumentException e)
            {
                throw new CliException("--interface: " + e.Message.Split(" (Parameter")[0]);
            }
        }
        if (r.File is not null || r.Socket is not null)
        {
            string? socket = r.Socket;
            if (socket is null)
            {
                // The node serves the live stream next to its file: prefer it for --follow.
                string sibling = FlowLogPaths.SocketForFile(r.File!);
                socket = File.Exists(sibling) ? sibling : null;
            }
            return (r.File, socket);
        }
        string[] logs;
        try
        {
            logs = Directory.Exists(r.Directory)
                ? Directory.GetFiles(r.Directory, "*" + FlowLogPaths.FileSuffix).Order(StringComparer.Ordinal).ToArray()
                : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"cannot list {r.Directory}: {e.Message}");
        }
        if (logs.Length == 0)
        {
            throw new CliException($"no flow log in {r.Directory} (is `gateway up` running? or pass --file)");
        }
        if (logs.Length > 1)
        {
            throw new CliException($"several flow logs in {r.Directory} ({string.Join(", ", logs.Select(Path.GetFileName))}): choose one with --interface");
        }
        string only = logs[0];
        string sock = only[..^FlowLogPaths.FileSuffix.Length] + FlowLogPaths.SocketSuffix;
        return (only, File.Exists(sock) ? sock : null);
    }

    private static (string? File, string? Socket) Existing(string file, string socket)
    {
        bool hasFile = File.Exists(file), hasSocket = File.Exists(socket);
        if (!hasFile && !hasSocket)
        {
            throw new CliException($"no flow log for that interface ({file} does not exist)");
        }
        return (hasFile ? file : null, hasSocket ? socket : null);
    }

    /// <summary>Without --follow and without a file: ask the node's socket where its file is.</summary>
    private static string HistoryFileFromSocket(string socketPath)
    {
        using var socket = FlowLogReader.TryConnect(socketPath)
            ?? throw new CliException($"cannot connect to flow log socket {socketPath}");
        FlowLogHello? hello = null;
        using var timeout = new CancellationTokenSource(HelloTimeout);
        FlowLogReader.ReadSocketAsync(socket, line =>
        {
            FlowLogHello.TryParse(line, out hello);
            return false;
        }, timeout.Token).GetAwaiter().GetResult();
        return hello?.File ?? throw new CliException($"the node behind {socketPath} keeps no flow log file: use --follow");
    }

    /// <summary>Prints the last N matching flows of the file below <paramref name="end"/>; returns where reading stopped.</summary>
    private static long PrintHistory(string file, long end, int last, Printer printer)
    {
        var window = new Queue<(FlowRecord? Flow, string Raw)>();
        long stop = FlowLogReader.ReadLines(file, 0, end, line =>
        {
            var flow = printer.Accept(line);
            if (flow is not null && last > 0)
            {
                if (window.Count == last)
                {
                    window.Dequeue();
                }
                window.Enqueue((flow, line));
            }
        });
        foreach (var (flow, _) in window)
        {
            printer.Print(flow!);
            if (printer.Done)
            {
                break;
            }
        }
        return stop;
    }

    /// <summary>History then live flows from the socket; true when the node closed the stream.</summary>
    private static async Task<bool> FollowSocketAsync(Socket socket, string? file, int last, Printer printer, CancellationToken cancel)
    {
        bool first = true;
        var helloWait = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        helloWait.CancelAfter(HelloTimeout);
        bool closed;
        using (helloWait)
        {
            closed = await FlowLogReader.ReadSocketAsync(socket, line =>
            {
                if (first)
                {
                    first = false;
                    helloWait.CancelAfter(Timeout.InfiniteTimeSpan);
                    if (FlowLogHello.TryParse(line, out var hello))
                    {
                        // Everything before the offset is in the file, everything after comes
                        // on this socket: history and live flows meet without gap or repeat.
                        string? history = hello.File ?? file;
                        if (history is not null && last > 0)
                        {
                            PrintHistory(history, hello.File is not null ? hello.FileOffset : -1, last, printer);
                        }
                        return !printer.Done;
                    }
                    if (file is not null && last > 0)
                    {
                        PrintHistory(file, -1, last, printer);
                    }
                }
                return printer.Live(line);
            }, helloWait.Token).ConfigureAwait(false);
        }
        if (first && !cancel.IsCancellationRequested && !closed)
        {
            throw new CliException("the flow log socket sent nothing: is the node stuck?");
        }
        return closed;
    }

    /// <summary>Parses, filters, counts and prints lines.</summary>
    private sealed class Printer(ObserveRequest request, TextWriter output, int maxFlows)
    {
        private int _printed;

        public int Malformed { get; private set; }
        public bool Done => _printed >= maxFlows;

        /// <summary>The flow if the line is one and passes the filters; counts malformed lines.</summary>
        public FlowRecord? Accept(string line)
        {
            if (line.Length == 0)
            {
                return null;
            }
            if (!FlowRecord.TryParse(line, out var flow))
            {
                if (!FlowLogHello.TryParse(line, out _))
                {
                    Malformed++;
                }
                return null;
            }
            return request.Filter.Matches(flow) ? flow : null;
        }

        public void Print(FlowRecord flow)
        {
            output.WriteLine(request.Json ? flow.Raw : FlowFormatter.Compact(flow));
            output.Flush();
            _printed++;
        }

        /// <summary>For live lines: prints a matching flow; false once enough are printed.</summary>
        public bool Live(string line)
        {
            if (Accept(line) is { } flow)
            {
                Print(flow);
            }
            return !Done;
        }
    }
}
