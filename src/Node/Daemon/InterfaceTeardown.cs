using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Gateway.Datapath;
using Gateway.Node.Link;
using Gateway.Node.Interop;
using Gateway.Node.Uapi;

namespace Gateway.Node.Daemon;

/// <summary>What <see cref="InterfaceTeardown.Run"/> did.</summary>
public sealed record TeardownResult(int? StoppedProcessId, IReadOnlyList<IpPrefix> RemovedRoutes);

/// <summary>A teardown that could not be done; the message is one line for the operator.</summary>
public sealed class TeardownException(string message) : Exception(message);

/// <summary>
/// `gateway down IFACE`: the operator takes an interface down on purpose, so strict mode's
/// fail-closed routes may go. A clean stop (SIGTERM) keeps them, so pods stay blocked while the
/// daemon restarts; this removes them. Steps: find the daemon serving the interface's UAPI
/// socket (the socket's peer credentials name its process, so no pid file can go stale), check
/// it is a gateway, stop it with SIGTERM and wait for it to exit, then remove the prohibit
/// routes the interface's state file lists. Works as well after a crash (no daemon, routes left).
/// </summary>
public static class InterfaceTeardown
{
    public static TeardownResult Run(string interfaceName, string uapiDirectory = UapiSocketServer.DefaultDirectory,
        string? stateDirectory = null, TimeSpan? stopTimeout = null)
    {
        if (string.IsNullOrEmpty(interfaceName) || interfaceName.Length > 15 || interfaceName.IndexOfAny(['/', ' ', '\0']) >= 0 ||
            interfaceName is "." or "..")
        {
            throw new ArgumentException($"'{interfaceName}' is not an interface name (1 to 15 characters, no '/' or spaces)", nameof(interfaceName));
        }
        int? pid = DaemonOf(interfaceName, uapiDirectory);
        if (pid is int id)
        {
            string command = CommandLine(id);
            if (!command.Contains("gateway", StringComparison.Ordinal))
            {
                throw new TeardownException($"{interfaceName} is served by process {id} ({command.Split(' ')[0]}), not by gateway; stop it yourself");
            }
            if (LibC.Kill(id, LibC.SIGTERM) != 0)
            {
                throw new TeardownException($"cannot stop process {id} serving {interfaceName}: errno {Marshal.GetLastPInvokeError()}");
            }
            var watch = Stopwatch.StartNew();
            var limit = stopTimeout ?? TimeSpan.FromSeconds(20);
            // Waiting for another process to exit, not protocol time.
            while (Directory.Exists($"/proc/{id}") && !IsZombie(id))
            {
                if (watch.Elapsed > limit)
                {
                    throw new TeardownException($"process {id} serving {interfaceName} did not stop within {limit.TotalSeconds:0} s; its routes stay");
                }
                Thread.Sleep(20);
            }
        }
        var removed = StrictRoutes.RemoveAll(interfaceName, stateDirectory);
        if (pid is null && removed.Count == 0)
        {
            throw new TeardownException($"{interfaceName}: no running gateway and no strict-mode routes to remove");
        }
        return new TeardownResult(pid, removed);
    }

    /// <summary>The process serving the interface's UAPI socket (SO_PEERCRED), or null when none
    /// answers (no socket, or a stale one left by a crash).</summary>
    private static int? DaemonOf(string interfaceName, string uapiDirectory)
    {
        string path = UapiClient.SocketPath(interfaceName, uapiDirectory);
        if (!File.Exists(path))
        {
            return null;
        }
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            return null;
        }
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        const int SOL_SOCKET = 1, SO_PEERCRED = 17;
        Span<byte> credentials = stackalloc byte[12];
        int length = socket.GetRawSocketOption(SOL_SOCKET, SO_PEERCRED, credentials);
        int pid = length >= 4 ? BitConverter.ToInt32(credentials) : 0;
        return pid > 0 ? pid : null;
    }

    private static string CommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length && stat[close + 2] == 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }
}
