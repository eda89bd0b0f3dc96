using System.Diagnostics;

namespace Gateway.Datapath.Tests.Devices;

/// <summary>
/// A network namespace made for one test and deleted on Dispose. Names carry the process id
/// and a counter so parallel runs never collide.
/// </summary>
internal sealed class TestNamespace : IDisposable
{
    private static int s_counter;

    public TestNamespace(string prefix = "gwdp")
    {
        Name = $"{prefix}{Environment.ProcessId}n{Interlocked.Increment(ref s_counter)}";
        Run("ip", $"netns add {Name}");
        Exec("ip link set lo up");
    }

    public string Name { get; }

    public static bool IsRoot => Environment.UserName == "root" || geteuid() == 0;

    public static string? SkipReason(params string[] tools)
    {
        if (!OperatingSystem.IsLinux())
        {
            return "needs Linux";
        }
        if (!IsRoot)
        {
            return "needs root to create network namespaces";
        }
        foreach (var tool in tools)
        {
            if (!File.Exists(tool))
            {
                return $"needs {tool}";
            }
        }
        return null;
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern uint geteuid();

    public string Exec(string command, bool check = true) => Run("ip", $"netns exec {Name} {command}", check);

    public static string Run(string file, string arguments, bool check = true)
    {
        var psi = new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(psi)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(30_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {arguments} did not finish");
        }
        if (check && process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {arguments} failed ({process.ExitCode}): {error}");
        }
        return output + error;
    }

    public void Dispose() => Run("ip", $"netns del {Name}", check: false);
}
