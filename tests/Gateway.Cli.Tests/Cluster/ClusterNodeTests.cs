using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Gateway.Cli.Demo;
using Gateway.Crypto;
using Gateway.Datapath.Audit;
using Gateway.Datapath.Devices;
using Gateway.Node.Uapi;

namespace Gateway.Cli.Tests.Cluster;

/// <summary>
/// Cluster mode end to end: real etcd and `gateway up` nodes in network namespaces (see
/// <see cref="KvCluster"/>), every node configured with only its own pods and the etcd address.
/// Waits poll other processes (etcd, the nodes) with bounds; nothing waits on protocol timers.
/// </summary>
[Collection("daemon")]
public class ClusterNodeTests
{
    private static int s_counter;

    private static string NewId() => $"gc{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_counter)}";

    private static void WaitFor(Func<bool> condition, string what, double seconds) =>
        CliHarness.WaitFor(condition, what, TimeSpan.FromSeconds(seconds));

    internal static string NodeLog(DemoCluster.Node node)
    {
        lock (node.Log)
        {
            return node.Log.ToString();
        }
    }

    [SkippableFact]
    public void NodesFindEachOtherThroughEtcdAFourthJoinsLiveAndAKilledNodeLeavesWithinItsLease()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        using var cluster = new KvCluster(NewId(), leaseTtlSeconds: 3);
        cluster.StartEtcd();
        var nodes = Enumerable.Range(1, 4).Select(cluster.AddNode).ToArray();
        var pods = nodes.Select((n, i) => cluster.AddPod(n, $"pod{i + 1}", 10, ("app", $"app{i + 1}"))).ToArray();
        foreach (var node in nodes)
        {
            cluster.WriteConfig(node);
        }
        string pcap = Path.Combine(cluster.Directory, "underlay.pcap");
        var capture = ClusterDemo.StartCapture(cluster.UnderlayNs, cluster.Bridge, pcap);
        try
        {
            cluster.StartNodes(nodes[..3]);
            // Every record becomes a peer within 2 s of appearing.
            var watch = Stopwatch.StartNew();
            WaitFor(() => nodes[..3].All(n => KvCluster.PeerKeys(n).Count == 2), "three nodes peered", 10);
            for (int i = 0; i < 3; i++)
            {
                for (int j = 0; j < 3; j++)
                {
                    if (i != j)
                    {
                        Assert.True(DemoCluster.Ping(pods[i], pods[j], 2) == 2, $"{pods[i].Name} -> {pods[j].Name}\n{NodeLog(nodes[i])}\n{NodeLog(nodes[j])}");
                    }
                }
            }
            // The node addresses came from the default route (no NodeAddress in the files).
            Assert.Contains($"as node 'node-1' (address {nodes[0].Underlay}", NodeLog(nodes[0]));

            // A fourth node joins; the others take it as a peer without any config change or restart.
            var pids = nodes[..3].Select(n => n.Process!.Id).ToArray();
            cluster.StartNodes(nodes[3]);
            watch.Restart();
            string key4 = nodes[3].PublicKey.ToBase64();
            WaitFor(() => nodes[..3].All(n => KvCluster.PeerKeys(n).Contains(key4)), "node-4 in every peer table", 2);
            Assert.True(DemoCluster.Ping(pods[0], pods[3], 2) == 2, NodeLog(nodes[3]));
            Assert.True(DemoCluster.Ping(pods[3], pods[2], 2) == 2, NodeLog(nodes[3]));
            Assert.Equal(pids, nodes[..3].Select(n => n.Process!.Id).ToArray());
            Assert.All(nodes[..3], n => Assert.False(n.Process!.HasExited));

            // node-2 crashes: its lease (3 s) ends and everyone drops it; its pods stay blocked.
            string key2 = nodes[1].PublicKey.ToBase64();
            KvCluster.StopNode(nodes[1], kill: true);
            watch.Restart();
            WaitFor(() => new[] { nodes[0], nodes[2], nodes[3] }.All(n => !KvCluster.PeerKeys(n).Contains(key2)), "node-2 removed everywhere", 3 + 3);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(3 + 3), $"removal took {watch.Elapsed}");
            Assert.Contains("node 'node-2' left", NodeLog(nodes[0]));
            Assert.True(KvCluster.IsProhibited(nodes[0], pods[1].Ip), "node-2's pods are not blocked by strict mode on node-1");
            Assert.Equal(0, DemoCluster.Ping(pods[0], pods[1], 1));
            Assert.True(DemoCluster.Ping(pods[0], pods[2], 2) == 2);
        }
        finally
        {
            ClusterDemo.StopCapture(capture);
        }
        if (File.Exists(pcap))
        {
            var report = CaptureAuditor.AuditFile(pcap);
            Assert.False(report.IsLeak, report.Verdict.ToString());
            Assert.True(report.Counts[PacketClass.WireGuard] > 0);
            Assert.Equal("ENCRYPTED", report.Verdict.ToString());
        }
    }

    /// <summary>Two nodes; frontend and backend on node-1, db on node-2.</summary>
    private static (KvCluster Cluster, DemoCluster.Node A, DemoCluster.Node B, DemoCluster.Pod Frontend, DemoCluster.Pod Backend, DemoCluster.Pod Db) TwoNodes()
    {
        var cluster = new KvCluster(NewId(), leaseTtlSeconds: 3);
        try
        {
            cluster.StartEtcd();
            var a = cluster.AddNode(1);
            var b = cluster.AddNode(2);
            var frontend = cluster.AddPod(a, "frontend", 10, ("app", "frontend"));
            var backend = cluster.AddPod(a, "backend", 11, ("app", "backend"));
            var db = cluster.AddPod(b, "db", 10, ("app", "db"));
            cluster.WriteConfig(a);
            cluster.WriteConfig(b);
            cluster.StartNodes(a, b);
            WaitFor(() => KvCluster.PeerKeys(a).Count == 1 && KvCluster.PeerKeys(b).Count == 1, "two nodes peered", 10);
            // Peering comes first; each node's view of the other's pods (ipcache) follows. Until
            // it has, the receiving node refuses the sender's VNI (it is bound to the ipcache), so
            // tests that cut etcd must start from a converged state.
            WaitFor(() => DemoCluster.Ping(frontend, db, 1) == 1, "pods of both nodes known to both", 10);
            return (cluster, a, b, frontend, backend, db);
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    [SkippableFact]
    public void APolicyStoredInEtcdIsEnforcedWithinTwoSecondsAndItsDeletionRestoresTheFlow()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        var (cluster, a, b, frontend, backend, db) = TwoNodes();
        using var _ = cluster;
        Assert.Equal(3, DemoCluster.Ping(frontend, db));
        using var http = cluster.Lab.ServeHttp(db);
        // A TCP connection frontend -> db established before the policy.
        using var listener = NetworkNamespace.Run(db.Ns, () =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Parse(db.Ip), 7000));
            socket.Listen(4);
            return socket;
        });
        using var client = NetworkNamespace.Run(frontend.Ns, () => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        client.Connect(IPAddress.Parse(db.Ip), 7000);
        using var server = listener.Accept();
        Assert.True(RoundTrip(client, server));

        // A policy stored in etcd denies frontend -> db on the node that owns db (ingress) within 2 s.
        string file = Path.Combine(cluster.Directory, "db.yaml");
        // Plus an egress policy that only node-1 (frontend's node) enforces: frontend may only open
        // TCP 7000 to db. Each node must have applied the store's policies for the checks below.
        DemoCluster.WriteSecret(file, KvClusterDemo.Policy + """

            ---
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: frontend-egress, namespace: default}
            spec:
              endpointSelector: {matchLabels: {app: frontend}}
              egress:
              - toEndpoints: [{matchLabels: {app: db}}]
                toPorts: [{ports: [{port: "7000", protocol: TCP}]}]
            """);
        long loadsA = PolicyLoads(a), loadsB = PolicyLoads(b);
        string applied = cluster.Gateway($"policy apply {file} --kvstore {cluster.EtcdUrl}", out int code);
        Assert.True(code == 0, applied);
        // Both nodes recompile within 2 s of the apply command returning.
        WaitFor(() => PolicyLoads(a) > loadsA && PolicyLoads(b) > loadsB, "both nodes reloading the policy", 2);
        WaitFor(() => DemoCluster.Ping(frontend, db, 1) == 0, "policy applied", 4);
        Assert.Equal(3, DemoCluster.Ping(backend, db));
        Assert.Contains("200 OK", DemoCluster.HttpGet(backend, db));
        // Ping: denied by frontend's egress on node-1. A new connection to 7000: allowed out of
        // node-1, denied by db's ingress on node-2.
        Assert.Matches("gateway_policy_verdict_total\\{direction=\"EGRESS\",[^}]*verdict=\"denied\"\\} [1-9]", DemoCluster.Metrics(a));
        Assert.Equal("timed out", DemoCluster.HttpGet(frontend, db, 7000, 1500));
        Assert.Matches("gateway_policy_verdict_total\\{direction=\"INGRESS\",[^}]*verdict=\"denied\"\\} [1-9]", DemoCluster.Metrics(b));
        // The established connection lives on: conntrack survived the policy change.
        Assert.True(RoundTrip(client, server), "the connection established before the policy was cut");
        foreach (string name in new[] { "db-ingress", "frontend-egress" })
        {
            string deleted = cluster.Gateway($"policy delete CiliumNetworkPolicy/default/{name} --kvstore {cluster.EtcdUrl}", out code);
            Assert.True(code == 0, deleted);
        }
        WaitFor(() => DemoCluster.Ping(frontend, db, 1) == 1, "policy deleted", 4);
    }

    /// <summary>gateway_policy_loads_total{outcome="success"} of the node.</summary>
    private static long PolicyLoads(DemoCluster.Node node)
    {
        var match = System.Text.RegularExpressions.Regex.Match(DemoCluster.Metrics(node), "gateway_policy_loads_total\\{[^}]*outcome=\"success\"\\} (\\d+)");
        return match.Success ? long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : -1;
    }

    private static bool RoundTrip(Socket client, Socket server)
    {
        client.ReceiveTimeout = server.ReceiveTimeout = 3000;
        var buffer = new byte[16];
        try
        {
            client.Send("ping"u8);
            int n = server.Receive(buffer);
            server.Send(buffer.AsSpan(0, n));
            return client.Receive(buffer) == n;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    [SkippableFact]
    public void AnEtcdOutageKeepsTrafficFlowingAndAKeyRotationIsFollowed()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        var (cluster, a, b, frontend, _, db) = TwoNodes();
        using var __ = cluster;
        var watch = Stopwatch.StartNew();

        // etcd goes away mid-traffic: forwarding continues on the last state; the metric says so.
        var pingLog = new System.Text.StringBuilder();
        var ping = cluster.Lab.StartProcess(frontend.Ns, $"ping -i 0.2 -c 100 -W 1 {db.Ip}", log: pingLog);
        cluster.StopEtcd();
        WaitFor(() => DemoCluster.Metrics(a).Contains("gateway_kvstore_up{interface=\"" + a.Interface + "\"} 0"), "kvstore_up 0", 15);
        // Longer than the lease TTL (3 s) without etcd.
        Assert.Equal(20, DemoCluster.Ping(frontend, db, 20));
        cluster.StartEtcd();
        WaitFor(() => DemoCluster.Metrics(a).Contains("gateway_kvstore_up{interface=\"" + a.Interface + "\"} 1"), "kvstore_up 1", 15);
        Assert.True(ping.WaitForExit(30_000));
        ping.WaitForExit();
        string pinged;
        lock (pingLog)
        {
            pinged = pingLog.ToString();
        }
        // Through the outage and the restart: at most one reply missing (the last may still be in flight).
        Assert.Matches(@"100 packets transmitted, (99|100) received", pinged);
        Assert.Equal(3, DemoCluster.Ping(frontend, db));
        // No flapping: the peers never left and came back.
        Assert.DoesNotContain("' left;", NodeLog(a));
        Assert.DoesNotContain("' left;", NodeLog(b));
        Assert.Single(NodeLog(a).Split('\n'), l => l.Contains("kvstore unreachable", StringComparison.Ordinal));

        // Key rotation: node-1 reloads (SIGHUP) a new private key; node-2's peer table holds the new
        // key within 2 s (read from its UAPI socket, polled every 10 ms without starting a process),
        // and traffic resumes afterwards.
        using var newKey = WireGuardKey.GeneratePrivate();
        using var newPublic = newKey.DerivePublic();
        string newHex = newPublic.ToHex();
        cluster.WriteConfig(a, privateKey: newKey.ToBase64());
        Assert.False(HoldsPeer(b, newHex));
        DemoCluster.Sh($"kill -HUP {a.Process!.Id}");
        watch.Restart();
        while (!HoldsPeer(b, newHex))
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"node-2 never followed the new key\n{NodeLog(a)}\n{NodeLog(b)}");
            Thread.Sleep(10);
        }
        var followed = watch.Elapsed;
        Assert.True(followed <= TimeSpan.FromSeconds(2), $"node-2 followed the new key after {followed.TotalSeconds:0.00} s (target 2 s)\n{NodeLog(a)}\n{NodeLog(b)}");
        Assert.Equal([newPublic.ToBase64()], KvCluster.PeerKeys(b)); // the old key is gone
        WaitFor(() => DemoCluster.Ping(frontend, db, 1) == 1, "traffic after rotation", 15);
    }

    /// <summary>True when the node's peer table (its UAPI socket's get=1) has the peer with this hex key.</summary>
    private static bool HoldsPeer(DemoCluster.Node node, string publicKeyHex)
    {
        try
        {
            var device = UapiDevice.Parse(UapiClient.Exchange(node.Interface, "get=1"));
            return device.Peers.Any(p => p.PublicKeyHex == publicKeyHex);
        }
        catch (IOException)
        {
            return false;
        }
    }

    [SkippableFact]
    public void BadRecordsInEtcdAreLoggedAndIgnoredEditsAreRepublishedAndACleanStopDeregisters()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        // A long lease: node-2 leaving quickly at the end can only be its deregistration.
        using var cluster = new KvCluster(NewId(), leaseTtlSeconds: 60);
        cluster.StartEtcd();
        var a = cluster.AddNode(1);
        var b = cluster.AddNode(2);
        var pa = cluster.AddPod(a, "pa", 10, ("app", "a"));
        var pb = cluster.AddPod(b, "pb", 10, ("app", "b"));
        cluster.WriteConfig(a);
        cluster.WriteConfig(b);
        cluster.StartNodes(a, b);
        WaitFor(() => KvCluster.PeerKeys(a).Count == 1 && KvCluster.PeerKeys(b).Count == 1, "two nodes peered", 10);

        using var thief = WireGuardKey.GeneratePrivate();
        using var thiefPublic = thief.DerivePublic();
        // A record that claims node-1's pod CIDR, one that is not JSON, and an unknown key.
        cluster.Etcdctl($"put cilium/state/nodes/v1/default/thief '{{\"Name\":\"thief\",\"Cluster\":\"default\",\"IPAddresses\":[{{\"Type\":\"InternalIP\",\"IP\":\"192.168.242.77\"}},{{\"Type\":\"CiliumInternalIP\",\"IP\":\"10.242.0.77\"}}],\"IPv4AllocCIDR\":{{\"IP\":\"10.42.1.0\",\"Mask\":\"////AA==\"}},\"WireguardPubKey\":\"{thiefPublic.ToBase64()}\",\"WireguardPort\":51871,\"BootID\":\"x\"}}'");
        cluster.Etcdctl("put cilium/state/nodes/v1/default/garbage 'not json {'");
        cluster.Etcdctl("put cilium/state/ip/v1/default/10.42.1.10/32 '{\"IP\":\"10.42.1.10\",\"ID\":999999,\"Host\":\"1.2.3.4\"}'");
        WaitFor(() => NodeLog(b).Contains("node record 'thief' ignored", StringComparison.Ordinal), "thief refused on node-2", 5);
        Assert.Contains("overlaps 10.42.1.0/24 of", NodeLog(b));
        Assert.DoesNotContain(thiefPublic.ToBase64(), KvCluster.PeerKeys(b));
        Assert.DoesNotContain(thiefPublic.ToBase64(), KvCluster.PeerKeys(a));
        Assert.False(a.Process!.HasExited);
        Assert.False(b.Process!.HasExited);
        Assert.Equal(3, DemoCluster.Ping(pa, pb));
        Assert.Equal(3, DemoCluster.Ping(pb, pa));

        // An edit of node-1's Endpoints file is republished: the new pod's address and identity.
        var added = cluster.AddPod(a, "pa2", 11, ("app", "new-label"));
        cluster.WriteConfig(a);
        WaitFor(() => cluster.Etcdctl("get --prefix --keys-only cilium/state/ip/v1/default/").Contains($"/{added.Ip}", StringComparison.Ordinal),
            "the new pod in the ipcache", 5);
        Assert.Contains("k8s:app=new-label", cluster.Etcdctl("get --prefix --keys-only cilium/state/identities/v1/value/"));
        // The key in etcd is not yet node-2's view: its watch and reload come after (one fresh-clone
        // CI run lost the first of three pings to that gap). Once one ping passes, all three must.
        WaitFor(() => DemoCluster.Ping(pb, added, 1) == 1, "the new pod reachable from node-2", 5);
        Assert.Equal(3, DemoCluster.Ping(pb, added));

        // A clean stop (SIGTERM) deregisters: node-1 drops node-2 at once, not after the 60 s lease.
        string keyB = b.PublicKey.ToBase64();
        KvCluster.StopNode(b, kill: false);
        Assert.Contains("cluster: deregistered node 'node-2'", NodeLog(b));
        WaitFor(() => !KvCluster.PeerKeys(a).Contains(keyB), "node-2 removed after deregistering", 2);
        Assert.True(KvCluster.IsProhibited(a, pb.Ip));
    }

    [SkippableFact]
    public void TlsEtcdAdmitsANodeWithAClientCertificateAndRefusesOneWithout()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        Skip.If(!File.Exists("/usr/bin/openssl"), "needs openssl to make the test certificates");
        using var cluster = new KvCluster(NewId(), leaseTtlSeconds: 3, tls: true);
        cluster.StartEtcd();
        var a = cluster.AddNode(1);
        var b = cluster.AddNode(2);
        cluster.AddPod(a, "ta", 10, ("app", "a"));
        cluster.WriteConfig(a);
        cluster.WriteConfig(b, withCertificate: false);
        cluster.StartNodes(a);
        Assert.Contains("registered node 'node-1'", NodeLog(a));
        cluster.Lab.StartNode(b, wait: false);
        Assert.True(b.Process!.WaitForExit(30_000), "the node without a client certificate kept running");
        Assert.NotEqual(0, b.Process.ExitCode);
        string log = NodeLog(b);
        Assert.Contains("cluster: cannot use the kvstore: ", log);
        Assert.Contains("https://192.168.242.254:2379", log);
        Assert.Contains("KVStoreCert", log); // says what to set
        Assert.DoesNotContain("   at ", log); // a message, not a stack trace
        Assert.Empty(KvCluster.PeerKeys(a));
    }
}
