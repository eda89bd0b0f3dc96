using System.Diagnostics;

namespace Gateway.Cli.Demo;

/// <summary>
/// `gateway demo --cluster`: cluster mode end to end. A real etcd and three nodes in network
/// namespaces, each configured with only its own pods and the etcd address; they find each
/// other through etcd, encrypt between every pair, take a policy stored in etcd, let a fourth
/// node join live, and drop a node that is killed once its lease ends. The underlay is captured
/// and audited; everything is removed afterwards.
/// </summary>
internal static class KvClusterDemo
{
    internal const int LeaseTtlSeconds = 4;

    internal const string Policy = """
        # db accepts only backend: frontend -> db is denied on every node, wherever the pods run.
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: db-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: db}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: backend}}]
        """;

    public static int Run(TextWriter output, TextWriter error)
    {
        if (KvCluster.CannotRunReason() is { } reason)
        {
            error.WriteLine($"gateway demo --cluster: {reason}");
            return 1;
        }
        string id = $"gk{Environment.ProcessId % 100000}";
        output.WriteLine("gateway demo --cluster: etcd and four nodes in network namespaces, no [Peer] sections, VXLAN inside WireGuard");
        KvCluster? cluster = null;
        Process? capture = null;
        bool ok = true;
        try
        {
            cluster = new KvCluster(id, LeaseTtlSeconds);
            cluster.StartEtcd();
            output.WriteLine($"  etcd {cluster.EtcdUrl} (in its own namespace, temporary data directory), lease TTL {LeaseTtlSeconds} s");
            var nodes = Enumerable.Range(1, 4).Select(cluster.AddNode).ToArray();
            var frontend = cluster.AddPod(nodes[0], "frontend", 10, ("app", "frontend"));
            var backend = cluster.AddPod(nodes[1], "backend", 10, ("app", "backend"));
            var db = cluster.AddPod(nodes[2], "db", 10, ("app", "db"));
            var cache = cluster.AddPod(nodes[3], "cache", 10, ("app", "cache"));
            foreach (var node in nodes)
            {
                cluster.WriteConfig(node);
            }
            string pcap = Path.Combine(cluster.Directory, "underlay.pcap");
            capture = ClusterDemo.StartCapture(nodes[0].Ns, cluster.UnderlayDevice(nodes[0]), pcap);

            cluster.StartNodes(nodes[..3]);
            var watch = Stopwatch.StartNew();
            WaitFor(() => nodes[..3].All(n => KvCluster.PeerKeys(n).Count == 2), TimeSpan.FromSeconds(10));
            output.WriteLine($"three nodes registered in etcd; all peered with each other {watch.Elapsed.TotalSeconds:0.0} s after the last registered:");
            foreach (var node in nodes[..3])
            {
                output.WriteLine($"  {node.Name}: underlay {node.Underlay}, tunnel {node.TunnelAddress}, pods {node.PodCidr}: " +
                                 string.Join(", ", node.Pods.Select(p => $"{p.Name} {p.Ip}")) + $"; {KvCluster.PeerKeys(node).Count} peers");
            }

            output.WriteLine("traffic between every pair of nodes:");
            var pods = new[] { frontend, backend, db };
            foreach (var from in pods)
            {
                foreach (var to in pods.Where(p => p != from))
                {
                    ok &= ClusterDemo.Report(output, $"ping {from.Name} -> {to.Name}", $"{DemoCluster.Ping(from, to)}/3 replies", s => s == "3/3 replies", "ALLOWED");
                }
            }

            string policyFile = Path.Combine(cluster.Directory, "db-ingress.yaml");
            DemoCluster.WriteSecret(policyFile, Policy);
            string applied = cluster.Gateway($"policy apply {policyFile} --kvstore {cluster.EtcdUrl}", out int code);
            output.WriteLine($"gateway policy apply db-ingress.yaml --kvstore {cluster.EtcdUrl}: {applied.Trim()}");
            ok &= code == 0;
            WaitFor(() => DemoCluster.Ping(frontend, db, 1) == 0, TimeSpan.FromSeconds(5));
            ok &= ClusterDemo.Report(output, "ping frontend -> db", $"{DemoCluster.Ping(frontend, db)}/3 replies", s => s == "0/3 replies",
                "DENIED by the policy from etcd (db accepts only backend)");
            ok &= ClusterDemo.Report(output, "ping backend -> db", $"{DemoCluster.Ping(backend, db)}/3 replies", s => s == "3/3 replies", "ALLOWED");

            cluster.StartNodes(nodes[3]);
            watch.Restart();
            WaitFor(() => nodes.All(n => KvCluster.PeerKeys(n).Count == 3), TimeSpan.FromSeconds(10));
            output.WriteLine($"node-4 started and registered; every node peered with it {watch.Elapsed.TotalSeconds:0.0} s later (no config edited, nothing restarted)");
            ok &= ClusterDemo.Report(output, "ping frontend -> cache", $"{DemoCluster.Ping(frontend, cache)}/3 replies", s => s == "3/3 replies", "ALLOWED (node-1 -> node-4)");
            ok &= ClusterDemo.Report(output, "ping cache -> backend", $"{DemoCluster.Ping(cache, backend)}/3 replies", s => s == "3/3 replies", "ALLOWED (node-4 -> node-2)");

            string backendKey = nodes[1].PublicKey.ToBase64();
            watch.Restart();
            KvCluster.StopNode(nodes[1], kill: true);
            WaitFor(() => !KvCluster.PeerKeys(nodes[0]).Contains(backendKey) && !KvCluster.PeerKeys(nodes[2]).Contains(backendKey) &&
                          !KvCluster.PeerKeys(nodes[3]).Contains(backendKey), TimeSpan.FromSeconds(LeaseTtlSeconds + 5));
            output.WriteLine($"node-2 killed (SIGKILL): its lease ended and every node removed it in {watch.Elapsed.TotalSeconds:0.0} s");
            ok &= ClusterDemo.Report(output, "route to backend on node-1", KvCluster.IsProhibited(nodes[0], backend.Ip) ? "prohibit" : "routed",
                s => s == "prohibit", "strict mode: never sent in plaintext");
            ok &= ClusterDemo.Report(output, "ping frontend -> backend", $"{DemoCluster.Ping(frontend, backend, 1)}/1 replies", s => s == "0/1 replies", "node-2 is gone");

            ok &= ClusterDemo.AuditCapture(output, capture, pcap, nodes[0].Name);
            capture = null;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or TimeoutException)
        {
            error.WriteLine($"gateway demo --cluster: {e.Message}");
            ok = false;
        }
        finally
        {
            if (capture is not null)
            {
                ClusterDemo.StopCapture(capture);
            }
            cluster?.Dispose();
            output.WriteLine("removed the demo's etcd, namespaces, links and files");
        }
        output.WriteLine(ok ? "cluster demo completed: nodes found each other through etcd, policy from etcd enforced, join and crash handled, underlay encrypted"
                            : "CLUSTER DEMO FAILED: see above");
        return ok ? 0 : 1;
    }

    /// <summary>Polls another process's state (etcd, the nodes) with a bound; false if it never held.</summary>
    private static void WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            if (watch.Elapsed > timeout)
            {
                throw new TimeoutException($"the cluster did not reach the expected state within {timeout.TotalSeconds:0} s");
            }
            Thread.Sleep(100);
        }
    }
}
