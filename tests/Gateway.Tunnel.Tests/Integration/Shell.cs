using System.Diagnostics;

namespace Gateway.Tunnel.Tests.Integration;

internal static class Shell
{
    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern uint geteuid();

    /// <summary>Null when the integration tests can run, else the reason they are skipped.</summary>
    public static string? SkipReason(params string[] tools)
    {
        if (!OperatingSystem.IsLinux()) return "needs Linux";
        if (geteuid() != 0) return "needs root (network namespaces, TUN, /var/run/wireguard)";
        foreach (var tool in tools)
            if (Which(tool) is null) return $"needs {tool} on PATH (Debian packages wireguard-go, wireguard-tools, iproute2)";
        return null;
    }

    public static string? Which(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':'))
        {
            var path = Path.Combine(dir, tool);
            if (File.Exists(path)) return path;
        }
        return null;
    }

    public static (int Exit, string Output) Try(string file, string arguments, int timeoutMs = 30_000)
    {
        var psi = new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutMs))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {arguments} did not finish");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    public static string Run(string file, string arguments)
    {
        var (exit, output) = Try(file, arguments);
        if (exit != 0) throw new InvalidOperationException($"{file} {arguments} failed ({exit}): {output}");
        return output;
    }

    /// <summary>Waits for a condition driven by another process (not protocol time: the engine's
    /// own timers are never waited on in tests).</summary>
    public static bool WaitUntil(Func<bool> condition, int timeoutMs)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.ElapsedMilliseconds > timeoutMs) return false;
            Thread.Sleep(10);
        }
        return true;
    }
}
