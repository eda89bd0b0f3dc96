using System.Diagnostics;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Node.Link;

namespace Gateway.Node.Tests.Link;

/// <summary>
/// Routes in bulk through one <c>ip -batch</c> process (a cluster's worth of peers), inside a
/// network namespace made for the test, on a veth pair that lives only there: no packet is sent anywhere.
/// </summary>
public sealed class IpCommandBatchTests
{
    private static int s_counter;

    private static string Sh(string command)
    {
        var psi = new ProcessStartInfo("/bin/sh", ["-c", command]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{command}: {error}");
        return output;
    }

    [SkippableFact]
    public void A_batch_installs_thousands_of_routes_and_a_failing_line_stops_it_with_ips_message()
    {
        Skip.If(Environment.UserName != "root", "needs root to create a network namespace");
        string ns = $"gwipb{Environment.ProcessId % 100000}{Interlocked.Increment(ref s_counter)}";
        Sh($"ip netns add {ns}");
        try
        {
            // No dummy module on every kernel: one end of a veth pair inside the namespace serves.
            Sh($"ip -n {ns} link add d0 type veth peer name d1 && ip -n {ns} link set d0 up && ip -n {ns} link set d1 up");
            var lines = new List<string>();
            for (int i = 0; i < 5000; i++)
            {
                lines.Add(IpCommand.AddRouteLine("d0", IpPrefix.Parse($"10.{i >> 8}.{i & 255}.0/24")));
            }
            var watch = Stopwatch.StartNew();
            bool ok = NetworkNamespace.Run(ns, () => IpCommand.TryRunBatch(lines, force: false, out _));
            watch.Stop();
            Assert.True(ok);
            Assert.Equal(5000, Sh($"ip -n {ns} -4 route show dev d0 proto boot").Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
            // One process for all of them: far below the seconds that 5,000 ip processes take.
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"5,000 routes took {watch.Elapsed}");

            var broken = new List<string>
            {
                IpCommand.AddRouteLine("d0", IpPrefix.Parse("10.200.0.0/24")),
                IpCommand.AddRouteLine("nosuchdev", IpPrefix.Parse("10.200.1.0/24")),
                IpCommand.AddRouteLine("d0", IpPrefix.Parse("10.200.2.0/24")),
            };
            string error = "";
            ok = NetworkNamespace.Run(ns, () => IpCommand.TryRunBatch(broken, force: false, out error));
            Assert.False(ok);
            Assert.Contains("nosuchdev", error, StringComparison.Ordinal);
            string routes = Sh($"ip -n {ns} -4 route show dev d0");
            Assert.Contains("10.200.0.0/24", routes, StringComparison.Ordinal);
            Assert.DoesNotContain("10.200.2.0/24", routes, StringComparison.Ordinal);

            var deletes = lines.Select(l => l.Replace("route replace", "route del", StringComparison.Ordinal)).Append("route del 10.99.99.0/24 dev d0").ToList();
            ok = NetworkNamespace.Run(ns, () => IpCommand.TryRunBatch(deletes, force: true, out _));
            Assert.False(ok); // the last line names a route that is not there; -force carried on past it
            Assert.DoesNotContain("10.0.0.0/24", Sh($"ip -n {ns} -4 route show dev d0"), StringComparison.Ordinal);
        }
        finally
        {
            Sh($"ip netns del {ns}");
        }
    }
}
