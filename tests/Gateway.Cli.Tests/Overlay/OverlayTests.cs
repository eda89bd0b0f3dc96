using Gateway.Cli.Demo;

namespace Gateway.Cli.Tests.Overlay;

/// <summary>
/// The encrypted overlay end to end: two nodes running `gateway up` in overlay mode, pods in
/// their own namespaces, CiliumNetworkPolicy enforced at both ends. Root only.
/// </summary>
[Collection("daemon")]
public class OverlayTests
{
    private static string? SkipReason() => DemoCluster.CannotRunReason() ?? (File.Exists("/usr/bin/ping") ? null : "needs ping");

    private static int s_runs;

    private static string Interesting(string metrics) =>
        string.Join("\n", metrics.Split('\n').Where(l => !l.StartsWith('#') && !l.EndsWith(" 0")));

    internal static DemoCluster Build(out DemoCluster.Pod frontend, out DemoCluster.Pod intruder, out DemoCluster.Pod backend, out DemoCluster.Pod db) =>
        ClusterDemo.Build($"go{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_runs)}", out frontend, out intruder, out backend, out db);

    private static void WaitFor(Func<bool> condition, string what) => CliHarness.WaitFor(condition, what);

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
        // The other direction: backend pings frontend. frontend's egress policy allows only TCP 80
        // and echo requests to backend, so its echo replies pass only as conntrack replies.
        Assert.Equal(3, DemoCluster.Ping(backend, frontend));
        // Replies flow without rules of their own (conntrack): the GET above proved that too.
        string metricsA = DemoCluster.Metrics(cluster.A), metricsB = DemoCluster.Metrics(cluster.B);
        Assert.Matches($"gateway_overlay_drop_count_total{{direction=\"EGRESS\",interface=\"{cluster.A.Interface}\",reason=\"POLICY_DENIED\"}} [1-9]", metricsA);
        Assert.Matches($"gateway_overlay_drop_count_total{{direction=\"INGRESS\",interface=\"{cluster.A.Interface}\",reason=\"POLICY_DENIED\"}} 0\n", metricsA);
        Assert.Matches($"gateway_overlay_drop_count_total{{direction=\"INGRESS\",interface=\"{cluster.B.Interface}\",reason=\"POLICY_DENIED\"}} [1-9]", metricsB);
        Assert.Matches($"gateway_overlay_drop_count_total{{direction=\"EGRESS\",interface=\"{cluster.B.Interface}\",reason=\"POLICY_DENIED\"}} 0\n", metricsB);
        Assert.Matches($"gateway_overlay_forward_count_total{{direction=\"INGRESS\",interface=\"{cluster.B.Interface}\"}} [1-9]", metricsB);
        Assert.Matches($"gateway_conntrack_entries{{interface=\"{cluster.B.Interface}\"}} [1-9]", metricsB);

        // The flow log and observe: node B's drop of intruder carries intruder's identity (from
        // the VNI), its labels, the direction and the encrypted flag.
        var (code, observed, _) = CliHarness.Run("observe", "--file", cluster.B.FlowLogPath, "--verdict", "DROPPED", "--from-label", "app=intruder", "--json");
        Assert.Equal(0, code);
        var lines = observed.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        uint intruderId = new Gateway.Policy.IdentityAllocator() is var ids && Gateway.Policy.EndpointFile.Load(Path.Combine(cluster.Directory, "endpoints.yaml"), ids).FindByName("intruder") is { } ep ? ep.Identity.Id : 0;
        foreach (var line in lines)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(line);
            var flow = doc.RootElement;
            Assert.Equal("DROPPED", flow.GetProperty("verdict").GetString());
            Assert.Equal("POLICY_DENIED", flow.GetProperty("drop_reason_desc").GetString());
            Assert.Equal("INGRESS", flow.GetProperty("traffic_direction").GetString());
            Assert.True(flow.GetProperty("IP").GetProperty("encrypted").GetBoolean());
            Assert.Equal(intruderId, flow.GetProperty("source").GetProperty("identity").GetUInt32());
            Assert.Equal(intruder.Ip, flow.GetProperty("IP").GetProperty("source").GetString());
        }
        // Nothing from frontend was dropped on node B.
        Assert.Equal("", CliHarness.Run("observe", "--file", cluster.B.FlowLogPath, "--verdict", "DROPPED", "--from-label", "app=frontend", "--json").Out);
    }
}

[Collection("daemon")]
public class OverlayOperationsTests
{
    private static DemoCluster Build(out DemoCluster.Pod frontend, out DemoCluster.Pod intruder, out DemoCluster.Pod backend, out DemoCluster.Pod db) =>
        OverlayTests.Build(out frontend, out intruder, out backend, out db);

    private static void WaitFor(Func<bool> condition, string what) => CliHarness.WaitFor(condition, what);

    [SkippableFact]
    public void StrictModeDropsWorkloadVxlanAndInstallsFallbackRoutes()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        using var cluster = Build(out var frontend, out _, out var backend, out _);
        // The UAPI socket (what the set-up waits for) appears only once the peer routes and the
        // strict routes are in: no wait here.
        string prohibit = $"prohibit 10.11.0.0/16 metric {Gateway.Node.Daemon.WireGuardNode.StrictRouteMetric}";
        string routes = DemoCluster.Exec(cluster.A.Ns, "ip route");
        Assert.Contains(prohibit, routes, StringComparison.Ordinal);
        Assert.Contains("10.11.2.0/24 dev " + cluster.A.Interface, routes, StringComparison.Ordinal);
        // A workload sending its own VXLAN into the overlay is refused before encryption.
        Gateway.Datapath.Devices.NetworkNamespace.Run(frontend.Ns, () =>
        {
            using var udp = new System.Net.Sockets.UdpClient(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(frontend.Ip), 0));
            var vxlan = new byte[50];
            vxlan[0] = 0x08;
            for (int i = 0; i < 3; i++)
            {
                udp.Send(vxlan, vxlan.Length, new System.Net.IPEndPoint(System.Net.IPAddress.Parse(backend.Ip), 8472));
            }
            return 0;
        });
        WaitFor(() => System.Text.RegularExpressions.Regex.IsMatch(DemoCluster.Metrics(cluster.A),
            $"gateway_overlay_drop_count_total{{direction=\"EGRESS\",interface=\"{cluster.A.Interface}\",reason=\"ENCAPSULATION_TRAFFIC_IS_PROHIBITED\"}} 3"),
            "three ENCAPSULATION_TRAFFIC_IS_PROHIBITED drops on node-a");
    }

    [SkippableFact]
    public void PolicyFileChangesApplyWithoutRestartAndABrokenFileKeepsThePreviousPolicy()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        using var cluster = Build(out var frontend, out _, out var backend, out var db);
        using var dbServer = cluster.ServeHttp(db);
        using var web = cluster.ServeHttp(backend);
        Assert.Equal("timed out", DemoCluster.HttpGet(frontend, db, 80, 1000));

        string policyPath = Path.Combine(cluster.Directory, "policy.yaml");
        string opened = ClusterDemo.Policy + """

            ---
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: frontend-to-db, namespace: default}
            spec:
              endpointSelector: {matchLabels: {app: frontend}}
              egress:
              - toEndpoints: [{matchLabels: {app: db}}]
                toPorts: [{ports: [{port: "80", protocol: TCP}]}]
            ---
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: db-from-frontend, namespace: default}
            spec:
              endpointSelector: {matchLabels: {app: db}}
              ingress:
              - fromEndpoints: [{matchLabels: {app: frontend}}]
                toPorts: [{ports: [{port: "80", protocol: TCP}]}]
            """;
        File.WriteAllText(policyPath, opened);
        WaitFor(() => cluster.A.Log.ToString().Contains("policy reloaded") && cluster.B.Log.ToString().Contains("policy reloaded"), "both nodes to reload");
        string got = DemoCluster.HttpGet(frontend, db);
        Assert.True(got == "HTTP/1.0 200 OK", $"{got}\n{cluster.A.Log}\n{cluster.B.Log}\n{string.Join("\n", DemoCluster.Metrics(cluster.A).Split('\n').Where(l => !l.StartsWith('#') && !l.EndsWith(" 0")))}\n{string.Join("\n", DemoCluster.Metrics(cluster.B).Split('\n').Where(l => !l.StartsWith('#') && !l.EndsWith(" 0")))}");

        // A broken file changes nothing: the flow stays allowed and the log says why.
        File.WriteAllText(policyPath, opened + "\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: broken}\nspec: {endpointSelector: 7}\n");
        WaitFor(() => cluster.A.Log.ToString().Contains("policy reload failed, previous policy stays in force"), "the reload failure in node-a's log");
        Assert.Equal("HTTP/1.0 200 OK", DemoCluster.HttpGet(frontend, db));
        Assert.Equal("HTTP/1.0 200 OK", DemoCluster.HttpGet(frontend, backend));
    }
}
