using System.Diagnostics;
using Gateway.Datapath;
using Gateway.Node.Configuration;

namespace Gateway.Node.Link;

/// <summary>
/// Configures the tunnel interface with iproute2's <c>ip</c> command (addresses, MTU, link
/// state, routes), the same tool wg-quick uses, so what Gateway does can be read and repeated
/// by hand. Failures raise <see cref="LinkException"/> carrying ip's own message.
/// </summary>
public static class IpCommand
{
    public static string IpPath { get; set; } = File.Exists("/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip";

    public static void SetMtu(string device, int mtu) => Run($"link set dev {device} mtu {mtu}");

    public static void SetUp(string device) => Run($"link set dev {device} up");

    public static void AddAddress(string device, InterfaceAddress address) =>
        Run($"{Family(address.Address)} address add {address} dev {device}");

    /// <summary>Routes the prefix to the device (replacing an existing route of the same key).</summary>
    public static void AddRoute(string device, IpPrefix prefix, string? table = null) =>
        Run($"{Family(prefix.Address)} route replace {prefix} dev {device}{TableSuffix(table)}");

    public static void DeleteRoute(string device, IpPrefix prefix, string? table = null) =>
        Run($"{Family(prefix.Address)} route del {prefix} dev {device}{TableSuffix(table)}", check: false);

    /// <summary>The <see cref="AddRoute"/> command as one line of an <c>ip -batch</c> file (the
    /// family follows from the prefix).</summary>
    public static string AddRouteLine(string device, IpPrefix prefix, string? table = null) =>
        $"route replace {prefix} dev {device}{TableSuffix(table)}";

    /// <summary>The <see cref="DeleteRoute"/> command as one line of an <c>ip -batch</c> file.</summary>
    public static string DeleteRouteLine(string device, IpPrefix prefix, string? table = null) =>
        $"route del {prefix} dev {device}{TableSuffix(table)}";

    private static string TableSuffix(string? table) => table is null or "auto" ? "" : $" table {table}";

    /// <summary>
    /// Runs many commands in one <c>ip -batch -</c> process: a cluster of thousands of nodes
    /// means thousands of routes, and one process per route costs milliseconds each. Without
    /// <paramref name="force"/> ip stops at the first failing line; the caller then knows only
    /// that some prefix of the lines was applied (route replace and del are idempotent, so it
    /// can redo them one by one to find the failing one). False with ip's message on failure.
    /// </summary>
    public static bool TryRunBatch(IReadOnlyCollection<string> lines, bool force, out string error)
    {
        error = "";
        if (lines.Count == 0)
        {
            return true;
        }
        using (var process = StartIp(force ? "-force -batch -" : "-batch -", standardInput: true))
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            try
            {
                foreach (string line in lines)
                {
                    process.StandardInput.WriteLine(line);
                }
                process.StandardInput.Close();
            }
            catch (IOException)
            {
                // ip stopped reading (it exits at the first failure without -force): its exit code says so.
            }
            process.WaitForExit();
            _ = stdout.Result;
            error = stderr.Result.Trim();
            return process.ExitCode == 0;
        }
    }

    public static void DeleteLink(string device) => Run($"link del dev {device}", check: false);

    /// <summary>The MTU of the interface that routes to <paramref name="destination"/>, or of
    /// the default route when none is given; null if it cannot be told.</summary>
    public static int? UnderlayMtu(IpAddress? destination = null)
    {
        string target = destination?.ToString() ?? "1.1.1.1";
        string routeOutput;
        try
        {
            routeOutput = Run($"{(destination?.IsV6 == true ? "-6" : "-4")} route get {target}");
        }
        catch (LinkException)
        {
            return null;
        }
        string[] words = routeOutput.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        int dev = Array.IndexOf(words, "dev");
        if (dev < 0 || dev + 1 >= words.Length)
        {
            return null;
        }
        try
        {
            string mtuPath = $"/sys/class/net/{words[dev + 1]}/mtu";
            return int.TryParse(File.ReadAllText(mtuPath).Trim(), out int mtu) ? mtu : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static string Family(IpAddress address) => address.IsV6 ? "-6" : "-4";

    /// <summary>Runs `ip ARGS`; returns its standard output.</summary>
    public static string Run(string arguments, bool check = true)
    {
        using (var process = StartIp(arguments, standardInput: false))
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            string stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (check && process.ExitCode != 0)
            {
                throw new LinkException($"ip {arguments}: {stderr.Trim()}");
            }
            return stdout.Result;
        }
    }

    private static Process StartIp(string arguments, bool standardInput)
    {
        var psi = new ProcessStartInfo(IpPath, arguments)
        {
            RedirectStandardInput = standardInput,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        try
        {
            return Process.Start(psi) ?? throw new LinkException($"cannot run {IpPath}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new LinkException($"cannot run {IpPath} (is iproute2 installed?): {e.Message}");
        }
    }
}

/// <summary>Configuring the interface failed; the message carries ip's explanation.</summary>
public sealed class LinkException(string message) : Exception(message);
