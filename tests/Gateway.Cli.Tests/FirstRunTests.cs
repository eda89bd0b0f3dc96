using Gateway.Cli.Tests.Daemon;

namespace Gateway.Cli.Tests;

/// <summary>
/// `./gateway demo` is the first command on a fresh Debian machine: the launcher finds the
/// Debian packages the demo needs and installs them through scripts/setup.sh when root, or
/// prints the exact command. A fake dpkg status database (without tcpdump) stands in for the
/// fresh machine.
/// </summary>
public sealed class FirstRunTests : IDisposable
{
    private readonly string _admin = Path.Combine(Path.GetTempPath(), $"gw-dpkg-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public FirstRunTests()
    {
        Directory.CreateDirectory(_admin);
        string status = File.Exists("/var/lib/dpkg/status") ? File.ReadAllText("/var/lib/dpkg/status") : "";
        var kept = status.Split("\n\n").Where(b => !b.StartsWith("Package: tcpdump\n", StringComparison.Ordinal));
        File.WriteAllText(Path.Combine(_admin, "status"), string.Join("\n\n", kept));
        // dpkg-query also wants these to exist.
        Directory.CreateDirectory(Path.Combine(_admin, "info"));
        Directory.CreateDirectory(Path.Combine(_admin, "updates"));
        Sh.Run($"chmod -R a+rX {_admin}", check: false);
    }

    private static string Root
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
                {
                    return dir.FullName;
                }
            }
            throw new InvalidOperationException("Gateway.sln not found");
        }
    }

    private static void SkipUnlessDebian() =>
        Skip.IfNot(File.Exists("/var/lib/dpkg/status") && File.Exists("/usr/bin/dpkg-query"), "needs a Debian dpkg database");

    [SkippableFact]
    public void SetupCheckNamesExactlyTheMissingDemoPackages()
    {
        SkipUnlessDebian();
        string missing = Sh.Run($"GATEWAY_DPKG_ADMINDIR={_admin} {Root}/scripts/setup.sh --demo --check; echo rc=$?", check: false);
        Assert.Equal("tcpdump\nrc=1\n", missing);
        Skip.If(Sh.Run($"{Root}/scripts/setup.sh --demo --check; echo rc=$?", check: false) != "rc=0\n", "this machine lacks demo packages itself");
    }

    [SkippableFact]
    public void LauncherWithoutRootPrintsTheExactCommandAndDoesNotBuild()
    {
        SkipUnlessDebian();
        Skip.IfNot(Sh.IsRoot && File.Exists("/usr/sbin/runuser"), "needs root to run the launcher as another user (runuser)");
        string output = Sh.Run($"cd /tmp && GATEWAY_DPKG_ADMINDIR={_admin} runuser -u nobody -- {Root}/gateway demo 2>&1; echo rc=$?", check: false);
        Assert.Contains("gateway demo: needs root and the Debian packages: tcpdump", output);
        Assert.Contains($"run: sudo {Root}/scripts/setup.sh --demo && sudo {Root}/gateway demo", output);
        Assert.EndsWith("rc=1\n", output);
    }

    [SkippableFact]
    public void SetupDemoAsRootInstallsWhatIsMissing()
    {
        SkipUnlessDebian();
        Skip.IfNot(Sh.IsRoot, "installing packages needs root");
        // tcpdump is really installed here, so apt-get has nothing to do; the script still has to
        // decide to install it and succeed.
        string output = Sh.Run($"GATEWAY_DPKG_ADMINDIR={_admin} {Root}/scripts/setup.sh --demo 2>&1; echo rc=$?", check: false, timeoutMs: 300_000);
        Assert.Contains("setup: installing tcpdump", output);
        Assert.EndsWith("rc=0\n", output);
    }

    public void Dispose() => Directory.Delete(_admin, recursive: true);
}
