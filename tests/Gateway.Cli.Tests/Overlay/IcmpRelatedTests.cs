using System.Net;
using System.Net.Sockets;
using Gateway.Cli.Demo;
using Gateway.Datapath.Devices;

namespace Gateway.Cli.Tests.Overlay;

/// <summary>
/// A real ICMP error across the overlay: a pod sends UDP to a closed port of a pod on the other
/// node; that node's kernel answers "port unreachable". No rule allows the error (backend may
/// send only to db, frontend may receive only from intruder), yet it must reach frontend as
/// RELATED to the allowed UDP flow, so the sender's socket sees ECONNREFUSED at once instead of
/// waiting out a timeout. Root only.
/// </summary>
[Collection("daemon")]
public class IcmpRelatedTests
{
    private static int s_runs;

    [SkippableFact]
    public void PortUnreachableForAnAllowedUdpFlowReachesTheSenderAcrossTheOverlay()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        using var cluster = new DemoCluster($"ir{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_runs)}");
        cluster.BuildNodes();
        var frontend = cluster.AddPod(cluster.A, "frontend", "10.11.1.10", ("app", "frontend"));
        var backend = cluster.AddPod(cluster.B, "backend", "10.11.2.10", ("app", "backend"));
        cluster.WriteConfiguration(File.ReadAllText(Path.Combine(PolicyCommandTests.Root, "fixtures", "policies", "icmp-related.yaml")));
        cluster.StartNodes();

        // Nothing listens on backend:9999.
        string outcome = NetworkNamespace.Run(frontend.Ns, () =>
        {
            using var udp = new UdpClient(new IPEndPoint(IPAddress.Parse(frontend.Ip), 0));
            udp.Client.ReceiveTimeout = 3000;
            udp.Connect(IPAddress.Parse(backend.Ip), 9999);
            for (int attempt = 0; attempt < 3; attempt++)
            {
                udp.Send(new byte[16], 16);
                try
                {
                    var from = new IPEndPoint(IPAddress.Any, 0);
                    udp.Receive(ref from);
                    return "a reply";
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
                {
                    return "refused";
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
                {
                }
            }
            return "timed out";
        });
        Assert.True(outcome == "refused",
            $"{outcome}\n{cluster.A.Log}\n{cluster.B.Log}\n{DemoCluster.Metrics(cluster.A)}\n{DemoCluster.Metrics(cluster.B)}");
        // Neither node judged the error by policy (it passed as related, not as a new flow).
        Assert.Matches($"gateway_overlay_drop_count_total{{direction=\"EGRESS\",interface=\"{cluster.B.Interface}\",reason=\"POLICY_DENIED\"}} 0\n", DemoCluster.Metrics(cluster.B));
        Assert.Matches($"gateway_overlay_drop_count_total{{direction=\"INGRESS\",interface=\"{cluster.A.Interface}\",reason=\"POLICY_DENIED\"}} 0\n", DemoCluster.Metrics(cluster.A));
    }
}
