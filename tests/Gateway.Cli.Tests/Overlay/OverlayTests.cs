using Gateway.Cli.Demo;

namespace Gateway.Cli.Tests.Overlay;

/// <summary>
/// The encrypted overlay end to end: two nodes running `gateway up` in overlay mode, pods in
/// their own namespaces, CiliumNetworkPolicy enforced at both ends. Root only.
/// </summary>
[Collection("daemon")]
public class OverlayTests
{
    internal const string Policy = """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: frontend-egress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: frontend}}
          egress:
          - toEndpoints: [{matchLabels: {app: backend}}]
            toPorts: [{ports: [{port: "80", protocol: TCP}]}]
          - toEndpoints: [{matchLabels: {app: backend}}]
            icmps: [{fields: [{type: 8, family: IPv4}]}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: backend-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: backend}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: frontend}}]
            toPorts: [{ports: [{port: "80", protocol: TCP}]}]
          - fromEndpoints: [{matchLabels: {app: frontend}}]
            icmps: [{fields: [{type: 8, family: IPv4}]}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: db-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: db}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: backend}}]
            toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
        """;

    private static string? SkipReason() => DemoCluster.CannotRunReason() ?? (File.Exists("/usr/bin/ping") ? null : "needs ping");

    private static int s_runs;

    private static string Interesting(string metrics) =>
        string.Join("\n", metrics.Split('\n').Where(l => !l.StartsWith('#') && !l.EndsWith(" 0")));

    internal static DemoCluster Build(out DemoCluster.Pod frontend, out DemoCluster.Pod intruder, out DemoCluster.Pod backend, out DemoCluster.Pod db)
    {
        var cluster = new DemoCluster($"go{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_runs)}");
        try
        {
            cluster.BuildNodes();
            frontend = cluster.AddPod(cluster.A, "frontend", "10.11.1.10", ("app", "frontend"));
            intruder = cluster.AddPod(cluster.A, "intruder", "10.11.1.20", ("app", "intruder"));
            backend = cluster.AddPod(cluster.B, "backend", "10.11.2.10", ("app", "backend"));
            db = cluster.AddPod(cluster.B, "db", "10.11.2.20", ("app", "db"));
            cluster.WriteConfiguration(Policy);
            cluster.StartNodes();
            return cluster;
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    [SkippableFact]
    public void AllowedFlowsPassAndDeniedFlowsDropAtTheRightNode()
    {
        Skip.If(SkipReason() is not null, SkipReason());
        using var cluster = Build(out var frontend, out var intruder, out var backend, out var db);
        using var http = cluster.ServeHttp(backend);
        using var dbServer = cluster.ServeHttp(db);

        Assert.True(DemoCluster.Ping(frontend, backend) == 3, $"ping frontend -> backend failed\n{cluster.A.Log}\n{cluster.B.Log}\n{Interesting(DemoCluster.Metrics(cluster.A))}\n{Interesting(DemoCluster.Metrics(cluster.B))}\n{DemoCluster.Exec(cluster.A.Ns, "ip route")}\n{DemoCluster.Exec(cluster.A.Ns, "ip -s link show " + cluster.A.Interface)}\n{DemoCluster.Exec(frontend.Ns, "ip route")}{DemoCluster.Exec(frontend.Ns, "ip neigh")}");
        Assert.Equal("HTTP/1.0 200 OK", DemoCluster.HttpGet(frontend, backend));
        // frontend's egress policy has no rule for db: dropped on node A before encryption.
        Assert.Equal("timed out", DemoCluster.HttpGet(frontend, db, 80, 1500));
        // intruder has no egress policy, so node A lets it out; node B reads intruder's identity
        // from the VNI and backend's ingress policy drops it.
        Assert.Equal("timed out", DemoCluster.HttpGet(intruder, backend, 80, 1500));
        // Replies flow without rules of their own (conntrack): the GET above proved that too.
        string metricsA = DemoCluster.Metrics(cluster.A), metricsB = DemoCluster.Metrics(cluster.B);
        Assert.Matches($"gateway_overlay_drop_count_total{{interface=\"{cluster.A.Interface}\",reason=\"POLICY_DENIED\",direction=\"EGRESS\"}} [1-9]", metricsA);
        Assert.Matches($"gateway_overlay_drop_count_total{{interface=\"{cluster.A.Interface}\",reason=\"POLICY_DENIED\",direction=\"INGRESS\"}} 0\n", metricsA);
        Assert.Matches($"gateway_overlay_drop_count_total{{interface=\"{cluster.B.Interface}\",reason=\"POLICY_DENIED\",direction=\"INGRESS\"}} [1-9]", metricsB);
        Assert.Matches($"gateway_overlay_drop_count_total{{interface=\"{cluster.B.Interface}\",reason=\"POLICY_DENIED\",direction=\"EGRESS\"}} 0\n", metricsB);
        Assert.Matches($"gateway_overlay_forward_count_total{{interface=\"{cluster.B.Interface}\",direction=\"INGRESS\"}} [1-9]", metricsB);
        Assert.Matches($"gateway_conntrack_entries{{interface=\"{cluster.B.Interface}\"}} [1-9]", metricsB);
    }
}
