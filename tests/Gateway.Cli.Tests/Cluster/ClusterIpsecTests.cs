using System.Security.Cryptography;
using System.Text.Json;
using Gateway.Cli.Demo;
using Gateway.Cli.Tests.Overlay;
using Gateway.Datapath;
using Gateway.Datapath.Audit;
using Gateway.Tunnel.Esp;

namespace Gateway.Cli.Tests.Cluster;

/// <summary>
/// IPsec mode in cluster mode end to end: real etcd and three `gateway up` nodes in network
/// namespaces (<see cref="KvCluster"/>), each configured with Encryption = ipsec, the same keys
/// file (as every Cilium node mounts the same secret), its own pods and the etcd address, no
/// [Peer]. Each node derives the node-pair keys from the addresses and boot ids the others publish;
/// tshark decrypts the recorded underlay with keys derived here from the published records, so
/// the nodes and the formula agree. Waits poll other processes with bounds.
/// </summary>
[Collection("daemon")]
public class ClusterIpsecTests
{
    private static int s_counter;

    private static string NewId() => $"gi{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_counter)}";

    private static string NodeLog(DemoCluster.Node node) => ClusterNodeTests.NodeLog(node);

    /// <summary>Every node's published BootID, by node name, read from etcd.</summary>
    private static Dictionary<string, string> PublishedBootIds(KvCluster cluster)
    {
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var node in cluster.Nodes)
        {
            string json = cluster.Etcdctl($"get --print-value-only cilium/state/nodes/v1/default/{node.Name}", check: false).Trim();
            if (json.StartsWith('{'))
            {
                ids[node.Name] = JsonDocument.Parse(json).RootElement.GetProperty("BootID").GetString()!;
            }
        }
        return ids;
    }

    [SkippableFact]
    public void IpsecNodesKeyEveryPairFromThePublishedBootIdsAndARestartedNodeGetsNewKeys()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        // A long lease: the killed node's record stays until its restart replaces it, so the
        // others see the boot id change in place (the case that must swap the SAs).
        using var cluster = new KvCluster(NewId(), leaseTtlSeconds: 60);
        cluster.StartEtcd();
        var nodes = Enumerable.Range(1, 3).Select(cluster.AddNode).ToArray();
        var pods = nodes.Select((n, i) => cluster.AddPod(n, $"pod{i + 1}", 10, ("app", $"app{i + 1}"))).ToArray();
        var globalKey = RandomNumberGenerator.GetBytes(20);
        string keysFile = Path.Combine(cluster.Directory, "ipsec-keys");
        DemoCluster.WriteSecret(keysFile, $"3+ rfc4106(gcm(aes)) {Convert.ToHexStringLower(globalKey)} 128\n");
        foreach (var node in nodes)
        {
            cluster.WriteConfig(node, extraOverlay: $"Encryption = ipsec\nIPsecKeyFile = {keysFile}\n");
        }
        string pcap = Path.Combine(cluster.Directory, "underlay.pcap");
        var capture = ClusterDemo.StartCapture(cluster.UnderlayNs, cluster.Bridge, pcap, "udp or esp");
        Dictionary<string, string> before, after;
        try
        {
            cluster.StartNodes(nodes);
            CliHarness.WaitFor(() => nodes.All(n => KvCluster.PeerKeys(n).Count == 2), "three nodes peered", TimeSpan.FromSeconds(15));
            before = PublishedBootIds(cluster);
            foreach (var node in nodes)
            {
                // A fresh UUID per run, and the one the node's ESP uses (its up line names it).
                Assert.True(Guid.TryParseExact(before[node.Name], "D", out _), before[node.Name]);
                Assert.Contains($"boot id {before[node.Name]})", NodeLog(node));
            }
            Assert.Equal(3, before.Values.Distinct().Count());
            // Peering first, then each node's view of the others' pods (ipcache).
            CliHarness.WaitFor(() => DemoCluster.Ping(pods[0], pods[1], 1) == 1 && DemoCluster.Ping(pods[2], pods[0], 1) == 1,
                "pods of every node known everywhere", TimeSpan.FromSeconds(20));
            AllPairsPing(nodes, pods);

            // node-2 crashes and starts again: a new boot id, new keys on every pair it is part of.
            KvCluster.StopNode(nodes[1], kill: true);
            lock (nodes[1].Log)
            {
                nodes[1].Log.Clear();
            }
            cluster.StartNodes(nodes[1]);
            after = PublishedBootIds(cluster);
            Assert.NotEqual(before["node-2"], after["node-2"]);
            Assert.Equal(before["node-1"], after["node-1"]);
            foreach (var peer in new[] { nodes[0], nodes[2] })
            {
                CliHarness.WaitFor(() => NodeLog(peer).Contains($"node 'node-2' changed: peer {nodes[1].PublicKey.ToBase64()} at {nodes[1].Underlay}:51871, boot id {after["node-2"]}", StringComparison.Ordinal),
                    $"{peer.Name} following node-2's new boot id", TimeSpan.FromSeconds(10));
            }
            CliHarness.WaitFor(() => DemoCluster.Ping(pods[0], pods[1], 1) == 1 && DemoCluster.Ping(pods[1], pods[2], 1) == 1,
                "traffic to the restarted node", TimeSpan.FromSeconds(30));
            AllPairsPing(nodes, pods);
            string metrics = DemoCluster.Metrics(nodes[0]);
            Assert.Matches($"gateway_ipsec_packets_total{{direction=\"rx\",interface=\"{nodes[0].Interface}\"}} [1-9]", metrics);
            Assert.Matches($"gateway_ipsec_keys{{interface=\"{nodes[0].Interface}\"}} 1", metrics);
        }
        finally
        {
            ClusterDemo.StopCapture(capture);
        }
        Skip.If(!File.Exists(pcap), "no tcpdump: the underlay was not recorded");

        // The underlay audits ENCRYPTED: ESP between the nodes, no plaintext pod traffic.
        var report = CaptureAuditor.AuditFile(pcap);
        Assert.Equal("ENCRYPTED", report.Verdict.ToString());
        Assert.True(report.Counts[PacketClass.IpsecEsp] > 0);
        var (auditCode, audit, _) = CliHarness.Run("audit", pcap);
        Assert.True(auditCode == 0, audit);
        Assert.Contains("ENCRYPTED", audit);

        if (!File.Exists(IpsecDaemonInteropTests.Tshark))
        {
            return;
        }
        // Keys agree: every ESP packet on the underlay, before and after the restart, decrypts
        // (to VXLAN) with keys derived here from the global key and the published records.
        // Wireshark uses the first SA matching (source, destination, SPI), so the keys of before
        // and after the restart go in separate runs over the same packets.
        var decrypted = new[] { before, after }.Select(boots => DecryptedRows(cluster, pcap, globalKey, nodes, boots)).ToArray();
        Assert.NotEmpty(decrypted[0]);
        Assert.Equal(decrypted[0].Count, decrypted[1].Count);
        var rows = decrypted[0].Zip(decrypted[1], (old, now) => (Source: old.Source, Old: old.Vni.Length > 0, New: now.Vni.Length > 0)).ToList();
        Assert.All(rows, r => Assert.True(r.Old || r.New, $"an ESP packet from {r.Source} did not decrypt with the keys derived from the published boot ids"));
        foreach (var node in nodes)
        {
            Assert.Contains(rows, r => r.Source == node.Underlay);
        }
        // node-2 sent with keys from its first boot id, then only with the new ones (its first
        // packets after the restart onwards decrypt only with them); node-1 <-> node-3 kept theirs.
        int firstNew = rows.FindIndex(r => r.Source == nodes[1].Underlay && r.New && !r.Old);
        Assert.True(firstNew > 0, "node-2 never sent with the keys of its new boot id");
        Assert.Contains(rows.Take(firstNew), r => r.Source == nodes[1].Underlay && r.Old);
        Assert.All(rows.Skip(firstNew).Where(r => r.Source == nodes[1].Underlay), r => Assert.True(r.New && !r.Old));
        Assert.Contains(rows.Skip(firstNew), r => r.Source == nodes[2].Underlay && r.Old && r.New);
    }

    /// <summary>(outer source, VNI or "" when not decrypted) of every ESP packet of the capture, with
    /// the SAs of every node pair derived from <paramref name="boots"/>.</summary>
    private static List<(string Source, string Vni)> DecryptedRows(KvCluster cluster, string pcap, byte[] globalKey, DemoCluster.Node[] nodes, Dictionary<string, string> boots)
    {
        var sas = new List<EspSaKeys>();
        foreach (var a in nodes)
        {
            foreach (var b in nodes.Where(b => b != a))
            {
                var (src, dst) = (IpAddress.Parse(a.Underlay), IpAddress.Parse(b.Underlay));
                sas.Add(new EspSaKeys(src, dst, 3, IpsecKeyDerivation.Derive(globalKey, src, dst, boots[a.Name], boots[b.Name]), 128));
            }
        }
        string espSa = Path.Combine(cluster.Directory, "esp_sa");
        DemoCluster.WriteSecret(espSa, WiresharkEspSa.File(sas));
        var (code, fields, err) = IpsecDaemonInteropTests.RunTshark(pcap, espSa, cluster.Directory, "esp");
        Assert.True(code == 0, err);
        return fields.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).Select(f => (f[0], f.Length > 1 ? f[1] : "")).ToList();
    }

    private static void AllPairsPing(DemoCluster.Node[] nodes, DemoCluster.Pod[] pods)
    {
        for (int i = 0; i < pods.Length; i++)
        {
            for (int j = 0; j < pods.Length; j++)
            {
                if (i != j)
                {
                    Assert.True(DemoCluster.Ping(pods[i], pods[j], 2) == 2, $"{pods[i].Name} -> {pods[j].Name}\n{NodeLog(nodes[i])}\n{NodeLog(nodes[j])}");
                }
            }
        }
    }
}
