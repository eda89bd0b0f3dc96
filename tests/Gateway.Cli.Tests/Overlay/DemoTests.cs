using System.CommandLine;
using Gateway.Cli.Demo;

namespace Gateway.Cli.Tests.Overlay;

[Collection("daemon")]
public class DemoTests
{
    [SkippableFact]
    public void TheDemoShowsAllowedAndDeniedFlowsAndAnEncryptedUnderlay()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        var (code, text, error) = CliHarness.Run("demo");
        Assert.True(code == 0, $"demo failed ({code}):\n{text}\n{error}");
        Assert.Matches(@"ping frontend -> backend\s+3/3 replies\s+ALLOWED", text);
        Assert.Matches(@"HTTP frontend -> backend:80\s+HTTP/1.0 200 OK\s+ALLOWED", text);
        Assert.Matches(@"HTTP frontend -> db:80\s+timed out\s+DENIED by frontend's egress policy on node-a", text);
        Assert.Matches(@"HTTP intruder -> backend:80\s+timed out\s+DENIED by backend's ingress policy on node-b", text);
        // The backend Service: frontend's requests to the ClusterIP reach both backend pods;
        // intruder's are denied by backend's ingress policy through the VIP.
        Assert.Matches(@"HTTP frontend -> 10\.96\.0\.10:80 x20\s+backend \d+, backend-2 \d+\s+ALLOWED, spread over both backends", text);
        Assert.Matches(@"HTTP intruder -> 10\.96\.0\.10:80\s+timed out\s+DENIED by backend's ingress policy on node-b, through the ClusterIP", text);
        Assert.Matches(@"node-a .*default/frontend:\d+ \(ID:\d+\) -> default/backend(-2)?:80 \(ID:\d+\) service:default/backend policy-verdict:default/frontend-egress EGRESS FORWARDED", text);
        // The flow log shows each verdict at the node that made it.
        Assert.Matches(@"node-a .*default/frontend:\d+ \(ID:\d+\) -> default/db:80 \(ID:\d+\) policy-verdict:none EGRESS DROPPED \(Policy denied\)", text);
        Assert.Matches(@"node-b .*default/intruder:\d+ \(ID:\d+\) -> default/backend:80 \(ID:\d+\) policy-verdict:none INGRESS DROPPED \(Policy denied\)", text);
        Assert.Matches(@"node-b .*default/frontend:\d+ \(ID:\d+\) -> default/backend:80 \(ID:\d+\) policy-verdict:default/backend-ingress INGRESS FORWARDED", text);
        if (File.Exists("/usr/bin/tcpdump") || File.Exists("/usr/sbin/tcpdump"))
        {
            Assert.Matches(@"underlay capture on node-a \(\d+ packets, \d+ WireGuard\): gateway audit says ENCRYPTED", text);
        }
        Assert.Contains("removed the demo's namespaces, links and files", text);
        // Nothing of the demo is left behind.
        Assert.DoesNotContain("gd" + (Environment.ProcessId % 100000), DemoCluster.Sh("ip netns list"));
    }
}
