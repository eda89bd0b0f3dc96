using Gateway.Cli.Demo;
using Gateway.Policy;

namespace Gateway.Cli.Tests.Overlay;

/// <summary>
/// A Gateway overlay node against a node built from stock parts: wireguard-go configured with
/// `wg`, and a Linux vxlan device (destination port 8472, collect-metadata mode) whose routes
/// set the VNI. The Gateway side must read the sender's identity from that VNI.
/// </summary>
[Collection("daemon")]
public class LinuxVxlanInteropTests
{
    private const string Policy = """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: frontend-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: frontend}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: backend}}]
            icmps: [{fields: [{type: 8, family: IPv4}]}]
        """;

    private static int s_runs;

    [SkippableFact]
    public void GatewayReadsTheIdentityFromTheVniALinuxVxlanDeviceSends()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        Skip.IfNot(File.Exists("/usr/bin/wireguard-go") && File.Exists("/usr/bin/wg") && File.Exists("/usr/bin/ping"),
            "needs wireguard-go, wg and ping (scripts/setup.sh installs them)");
        using var cluster = new DemoCluster($"lx{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_runs)}");
        cluster.BuildNodes();
        var frontend = cluster.AddPod(cluster.A, "frontend", "10.11.1.10", ("app", "frontend"));
        // Node B is Linux: its "pods" are addresses on its loopback device, described in the shared
        // endpoints file like any pod.
        var backend = new DemoCluster.Pod("backend", "default", "10.11.2.10", new Dictionary<string, string> { ["app"] = "backend" }, cluster.B);
        var db = new DemoCluster.Pod("db", "default", "10.11.2.20", new Dictionary<string, string> { ["app"] = "db" }, cluster.B);
        cluster.B.Pods.Add(backend);
        cluster.B.Pods.Add(db);
        cluster.WriteConfiguration(Policy);

        // Identities as every node computes them from the shared endpoints file.
        var table = EndpointFile.Load(Path.Combine(cluster.Directory, "endpoints.yaml"), new IdentityAllocator());
        uint backendId = table.FindByName("backend")!.Identity.Id;
        uint dbId = table.FindByName("db")!.Identity.Id;
        Assert.NotEqual(backendId, dbId);

        // Node A: gateway in overlay mode. Node B: wireguard-go + vxlan.
        cluster.StartNode(cluster.A);
        string b = cluster.B.Ns, wg = cluster.B.Interface, vx = $"{cluster.Id}vx";
        var wgProcess = cluster.StartProcess(b, $"wireguard-go -f {wg}", new() { ["WG_PROCESS_FOREGROUND"] = "1" });
        cluster.WaitForSocket(cluster.B, wgProcess);
        string key = Path.Combine(cluster.Directory, "b.key");
        File.WriteAllText(key, cluster.B.PrivateKey.ToBase64() + "\n");
        DemoCluster.Exec(b, $"wg set {wg} listen-port 51871 private-key {key} peer {cluster.A.PublicKey.ToBase64()} " +
                            $"allowed-ips {cluster.A.TunnelAddress}/32 endpoint {cluster.A.Underlay}:51871");
        DemoCluster.Exec(b, $"ip addr add {cluster.B.TunnelAddress}/24 dev {wg}");
        DemoCluster.Exec(b, $"ip link set {wg} mtu 1420 up");
        DemoCluster.Exec(b, $"ip link add {vx} type vxlan external dstport 8472 local {cluster.B.TunnelAddress}");
        DemoCluster.Exec(b, $"ip link set {vx} mtu 1370 up");
        DemoCluster.Exec(b, $"ip addr add {backend.Ip}/32 dev lo");
        DemoCluster.Exec(b, $"ip addr add {db.Ip}/32 dev lo");
        // Frames to the Gateway node use its MAC (02:47:57 + low bytes of its tunnel address).
        DemoCluster.Exec(b, $"ip neigh replace {frontend.Ip} lladdr 02:47:57:fa:00:01 dev {vx} nud permanent");

        // Backend's identity in the VNI: frontend's ingress policy admits it.
        DemoCluster.Exec(b, $"ip route replace 10.11.1.0/24 encap ip id {backendId} dst {cluster.A.TunnelAddress} dev {vx}");
        string allowed = DemoCluster.Exec(b, $"ping -c 3 -i 0.2 -W 2 -I {backend.Ip} {frontend.Ip}", check: false);
        Assert.True(allowed.Contains("3 received"), $"{allowed}\n{cluster.A.Log}\n{DemoCluster.Metrics(cluster.A)}");

        // The same packets carrying db's identity are refused by the same policy.
        DemoCluster.Exec(b, $"ip route replace 10.11.1.0/24 encap ip id {dbId} dst {cluster.A.TunnelAddress} dev {vx}");
        string denied = DemoCluster.Exec(b, $"ping -c 2 -i 0.2 -W 1 -I {db.Ip} {frontend.Ip}", check: false);
        Assert.Contains("0 received", denied);
        Assert.Matches($"gateway_overlay_drop_count_total{{direction=\"INGRESS\",interface=\"{cluster.A.Interface}\",reason=\"POLICY_DENIED\"}} [1-9]",
            DemoCluster.Metrics(cluster.A));

        // A node can speak only for its own workloads with their own identities: backend's packets
        // carrying db's identity (a forged VNI), and the host identity, are refused before policy.
        string forged = DemoCluster.Exec(b, $"ping -c 2 -i 0.2 -W 1 -I {backend.Ip} {frontend.Ip}", check: false);
        Assert.Contains("0 received", forged);
        DemoCluster.Exec(b, $"ip route replace 10.11.1.0/24 encap ip id {ReservedIdentity.Host} dst {cluster.A.TunnelAddress} dev {vx}");
        string host = DemoCluster.Exec(b, $"ping -c 2 -i 0.2 -W 1 -I {backend.Ip} {frontend.Ip}", check: false);
        Assert.Contains("0 received", host);
        Assert.Matches($"gateway_overlay_drop_count_total{{direction=\"INGRESS\",interface=\"{cluster.A.Interface}\",reason=\"INVALID_IDENTITY\"}} [4-9]",
            DemoCluster.Metrics(cluster.A));
    }
}
