using System.Diagnostics;
using Gateway.Datapath.Audit;

namespace Gateway.Datapath.Tests;

/// <summary>
/// Captures made by real, independent implementations: two wireguard-go peers and the Linux
/// kernel's vxlan device in two network namespaces this test creates (make-real-captures.sh),
/// captured with tcpdump on the underlay veth. Needs root, tcpdump, wireguard-go, wg, ip.
/// The same script made fixtures/captures/{wireguard-go-underlay,linux-vxlan-dns}.pcap.
/// </summary>
public class RealCaptureIntegrationTests
{
    private static bool IsRoot => Environment.UserName == "root" || (OperatingSystem.IsLinux() && GetEuid() == 0);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEuid();

    private static bool Has(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, tool)));

    [SkippableFact]
    public void WireGuardGoUnderlayIsEncryptedAndLinuxVxlanDnsIsALeak()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && IsRoot, "needs root to create network namespaces");
        foreach (string tool in new[] { "tcpdump", "wireguard-go", "wg", "ip" })
        {
            Skip.IfNot(Has(tool), $"needs {tool}");
        }
        Skip.IfNot(File.Exists("/dev/net/tun"), "needs /dev/net/tun for wireguard-go");

        string suffix = "t" + Environment.ProcessId;
        string dir = Path.Combine(Path.GetTempPath(), "gw-real-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string script = Path.Combine(RepoPaths.Root, "tests", "Gateway.Datapath.Tests", "RealWorld", "make-real-captures.sh");
            var psi = new ProcessStartInfo("bash", [script, dir, suffix]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var process = Process.Start(psi)!;
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(90)))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail("make-real-captures.sh timed out");
            }
            Assert.True(process.ExitCode == 0, $"script failed ({process.ExitCode}): {stdout.Result} {stderr.Result}");

            AuditReport wg = CaptureAuditor.AuditFile(Path.Combine(dir, "wireguard-go-underlay.pcap"));
            Assert.Equal("ENCRYPTED", wg.Verdict);
            WireGuardFlow flow = Assert.Single(wg.WireGuardFlows);
            Assert.True(flow.Initiations >= 1 && flow.Responses >= 1 && flow.TransportMessages >= 2,
                $"init {flow.Initiations} resp {flow.Responses} transport {flow.TransportMessages}");

            AuditReport vx = CaptureAuditor.AuditFile(Path.Combine(dir, "linux-vxlan-dns.pcap"));
            Assert.Equal("LEAK", vx.Verdict);
            Assert.True(vx.LooksLikeTunnelInterface);
            Assert.Contains(vx.Offenders, o => o.Vni == 42 && o.Inner is FlowKey k && k.DestinationPort == 53);
        }
        finally
        {
            // The script cleans up on every exit path; this covers a killed script.
            foreach (string ns in new[] { $"gwdp-a-{suffix}", $"gwdp-b-{suffix}" })
            {
                using var del = Process.Start(new ProcessStartInfo("ip", ["netns", "del", ns]) { RedirectStandardError = true });
                del?.WaitForExit(5000);
            }
            Directory.Delete(dir, recursive: true);
        }
    }
}
