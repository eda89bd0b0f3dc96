using System.Diagnostics;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>Runs shell commands for integration tests; failures carry the command and stderr.</summary>
internal static class Sh
{
    public static string Run(string command, bool check = true, int timeoutMs = 60_000)
    {
        var psi = new ProcessStartInfo("/bin/bash", ["-c", command])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{command}' did not finish in {timeoutMs} ms");
        }
        p.WaitForExit();
        if (check && p.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{command}' failed ({p.ExitCode}): {stderr.Result}{stdout.Result}");
        }
        return stdout.Result + (check ? "" : stderr.Result);
    }

    public static bool IsRoot => Environment.UserName == "root";

    /// <summary>Null when the integration tests can run here, else why not.</summary>
    public static string? SkipReason()
    {
        if (!IsRoot)
        {
            return "needs root to create network namespaces and TUN devices";
        }
        foreach (var tool in new[] { "/usr/bin/wireguard-go", "/usr/bin/wg", "/usr/bin/ping", "/usr/bin/iperf3" })
        {
            if (!File.Exists(tool))
            {
                return $"needs {tool} (scripts/setup.sh installs it)";
            }
        }
        return null;
    }
}
