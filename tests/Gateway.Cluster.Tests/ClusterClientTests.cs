using System.Collections.Concurrent;
using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using static Gateway.Cluster.Tests.ClusterTestKit;

namespace Gateway.Cluster.Tests;

/// <summary>ClusterClient against a real etcd: registration and leases, identities, watches,
/// outages, compaction, TLS, bad records, several endpoints.</summary>
public sealed class ClusterClientTests
{
    private static readonly CancellationToken None = CancellationToken.None;

    [SkippableFact]
    public async Task Register_IsSeenByOthers_AndDeregisterRemovesEverything()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var logA = new LogSink();
        await using var a = await ClusterClient.ConnectAsync(etcd.Options(), logA.Add);
        await using var b = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        await b.StartWatchingAsync(None);

        await a.RegisterNodeAsync(Node("node-a", 1), None);
        uint id = await a.AllocateIdentityAsync("k8s:app=web;k8s:io.kubernetes.pod.namespace=default", None);
        await a.PublishIpCacheAsync([Entry("node-a", "10.0.1.5/32", id), Entry("node-a", "10.0.1.6/32", id)], None);

        WaitFor(() => b.Current.Nodes.ContainsKey("node-a") && b.Current.IpCache.Count == 2 && b.Current.Identities.ContainsKey(id), "node-a's keys at b");
        Assert.Equal(Node("node-a", 1), b.Current.Nodes["node-a"]);
        Assert.Equal("k8s:app=web;k8s:io.kubernetes.pod.namespace=default;", b.Current.Identities[id]);
        Assert.Equal(id, b.Current.IpCache["10.0.1.5/32"].Identity);
        Assert.Equal("node-a", b.Current.IpCache["10.0.1.6/32"].NodeName);

        // Replacing the set deletes what is no longer listed; a key rotation updates the record.
        await a.PublishIpCacheAsync([Entry("node-a", "10.0.1.6/32", id)], None);
        var rotated = Node("node-a", 1) with { WireGuardPublicKey = Convert.ToBase64String(Enumerable.Repeat((byte)9, 32).ToArray()) };
        await a.RegisterNodeAsync(rotated, None);
        WaitFor(() => b.Current.IpCache.Count == 1 && b.Current.Nodes["node-a"].WireGuardPublicKey == rotated.WireGuardPublicKey, "the update at b");

        await a.DeregisterAsync(None);
        WaitFor(() => b.Current.Nodes.Count == 0 && b.Current.IpCache.Count == 0 && b.Current.Identities.Count == 0, "everything of node-a gone at b");
        Assert.Equal(0, a.LeaseId);
    }

    [SkippableFact]
    public async Task CrashedNode_DisappearsWhenItsLeaseExpires()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        await using var b = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        await b.StartWatchingAsync(None);
        // 3 s: the shortest TTL that leaves a loaded test machine 2 s of slack between keep-alives.
        var a = await ClusterClient.ConnectAsync(etcd.Options(TimeSpan.FromSeconds(3)), _ => { });
        await a.RegisterNodeAsync(Node("node-a", 1), None);
        await a.PublishIpCacheAsync([Entry("node-a", "10.0.1.5/32", 300)], None);
        WaitFor(() => b.Current.Nodes.ContainsKey("node-a"), "node-a registered");

        // Kept alive well past its TTL while the client runs.
        var alive = Stopwatch.StartNew();
        while (alive.Elapsed < TimeSpan.FromSeconds(5))
        {
            Assert.True(b.Current.Nodes.ContainsKey("node-a"), "node-a vanished while its client kept the lease alive");
            Thread.Sleep(100);
        }

        var crashed = Stopwatch.StartNew();
        await a.DisposeAsync(); // no deregistration: a crash as far as etcd can tell
        WaitFor(() => !b.Current.Nodes.ContainsKey("node-a") && b.Current.IpCache.Count == 0, "node-a expired", TimeSpan.FromSeconds(10));
        Assert.True(crashed.Elapsed < TimeSpan.FromSeconds(7), $"expiry took {crashed.Elapsed} with a 3 s lease");
    }

    [SkippableFact]
    public async Task LostLease_IsReplaced_AndEveryOwnKeyPutAgain()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var logA = new LogSink();
        await using var a = await ClusterClient.ConnectAsync(etcd.Options(TimeSpan.FromSeconds(3)), logA.Add);
        await using var b = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        await b.StartWatchingAsync(None);
        await a.RegisterNodeAsync(Node("node-a", 1), None);
        uint id = await a.AllocateIdentityAsync("k8s:app=web", None);
        await a.PublishIpCacheAsync([Entry("node-a", "10.0.1.5/32", id)], None);
        WaitFor(() => b.Current.Nodes.ContainsKey("node-a") && b.Current.IpCache.Count == 1, "node-a at b");
        long lost = a.LeaseId;

        // etcd loses the lease (as after an outage longer than the TTL): every key under it goes.
        using var raw = Raw(etcd);
        await raw.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lost });
        WaitFor(() => a.LeaseId != lost && a.LeaseId != 0, "a to replace its lease", TimeSpan.FromSeconds(10));
        WaitFor(() => b.Current.Nodes.ContainsKey("node-a") && b.Current.IpCache.Count == 1, "node-a's keys back at b", TimeSpan.FromSeconds(10));
        Assert.Equal(1, logA.Count("expired in etcd"));
        var refs = await b.GetIdentityReferencesAsync(None);
        Assert.Equal(1, refs["k8s:app=web;"]);
        Assert.Equal("k8s:app=web;", b.Current.Identities[id]);
        Assert.Equal(id, await a.AllocateIdentityAsync("k8s:app=web", None));
    }

    [SkippableFact]
    public async Task RacingNodes_GetTheSameIdentityForTheSameLabels_AndDistinctOnesOtherwise()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var clients = new List<ClusterClient>();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                var c = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
                clients.Add(c);
                await c.RegisterNodeAsync(Node($"node-{i}", i + 1), None);
            }
            const int rounds = 40;
            var results = new ConcurrentDictionary<(int Client, int Round), uint>();
            await Parallel.ForEachAsync(Enumerable.Range(0, rounds * clients.Count), new ParallelOptions { MaxDegreeOfParallelism = 6 }, async (i, ct) =>
            {
                int round = i / clients.Count, client = i % clients.Count;
                results[(client, round)] = await clients[client].AllocateIdentityAsync($"k8s:app=app-{round};k8s:io.kubernetes.pod.namespace=default", ct);
            });
            var perRound = Enumerable.Range(0, rounds).Select(r => Enumerable.Range(0, clients.Count).Select(c => results[(c, r)]).Distinct().ToList()).ToList();
            Assert.All(perRound, ids => Assert.Single(ids));
            var ids = perRound.Select(r => r[0]).ToList();
            Assert.Equal(rounds, ids.Distinct().Count());
            Assert.All(ids, id => Assert.InRange(id, 256u, 256u + rounds * 3));

            // Every node references each identity; one release keeps the number, the last frees it.
            var refs = await clients[0].GetIdentityReferencesAsync(None);
            Assert.Equal(clients.Count, refs["k8s:app=app-0;k8s:io.kubernetes.pod.namespace=default;"]);
            await clients[0].ReleaseIdentityAsync("k8s:app=app-0;k8s:io.kubernetes.pod.namespace=default", None);
            await clients[1].ReleaseIdentityAsync("k8s:app=app-0;k8s:io.kubernetes.pod.namespace=default", None);
            uint again = await clients[0].AllocateIdentityAsync("k8s:app=app-0;k8s:io.kubernetes.pod.namespace=default;", None);
            Assert.Equal(ids[0], again);
            await clients[0].ReleaseIdentityAsync("k8s:app=app-0;k8s:io.kubernetes.pod.namespace=default", None);
            await clients[2].ReleaseIdentityAsync("k8s:app=app-0;k8s:io.kubernetes.pod.namespace=default", None);
            Assert.False((await clients[1].GetIdentityReferencesAsync(None)).ContainsKey("k8s:app=app-0;k8s:io.kubernetes.pod.namespace=default;"));
            // The freed number goes to the next new label set.
            uint reused = await clients[1].AllocateIdentityAsync("k8s:app=new", None);
            Assert.Equal(ids.Min(), Math.Min(reused, ids.Min()));
            Assert.DoesNotContain(reused, ids.Skip(1));
        }
        finally
        {
            foreach (var c in clients)
            {
                await c.DisposeAsync();
            }
        }
    }

    [SkippableFact]
    public async Task Watch_SeesPolicyPutsAndDeletes()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        await using var a = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        await using var b = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        int changes = 0;
        b.Changed += _ => Interlocked.Increment(ref changes);
        await b.StartWatchingAsync(None);

        var p1 = new PolicyRecord("CiliumNetworkPolicy/default/allow-web", SamplePolicies.Cnp("allow-web", "default"));
        var p2 = new PolicyRecord("CiliumNetworkPolicy/prod/allow-web", SamplePolicies.Cnp("allow-web", "prod"));
        await a.PutPoliciesAsync([p1, p2], None);
        WaitFor(() => b.Current.Policies.Count == 2, "two policies at b");
        Assert.Equal(p1, b.Current.Policies[p1.Name]);
        Assert.True(await a.DeletePolicyAsync(p1.Name, None));
        Assert.False(await a.DeletePolicyAsync(p1.Name, None));
        WaitFor(() => b.Current.Policies.Count == 1, "one policy left at b");
        Assert.True(changes >= 2);

        // A record whose YAML does not hold the named policy is refused before it is stored.
        await Assert.ThrowsAsync<ArgumentException>(() => a.PutPoliciesAsync([new PolicyRecord("CiliumNetworkPolicy/default/other", SamplePolicies.Cnp("allow-web", "default"))], None));
    }

    [SkippableFact]
    public async Task EtcdRestart_KeepsLastState_ResyncsWithoutSpuriousChanges_ThenFollowsNewWrites()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var logB = new LogSink();
        await using var a = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        await a.RegisterNodeAsync(Node("node-a", 1), None);
        await a.PublishIpCacheAsync([Entry("node-a", "10.0.1.5/32", 300)], None);
        await using var b = await ClusterClient.ConnectAsync(etcd.Options(), logB.Add);
        int changes = 0;
        b.Changed += _ => Interlocked.Increment(ref changes);
        await b.StartWatchingAsync(None);
        var before = b.Current;
        Assert.Single(before.Nodes);

        etcd.Stop();
        WaitFor(() => !b.IsUp, "b to notice the outage");
        Assert.Same(before.Nodes, b.Current.Nodes); // last known state kept
        etcd.Start();
        WaitFor(() => b.IsUp && b.Current.Revision >= before.Revision && logB.Count("reachable again") > 0, "b to reconnect", TimeSpan.FromSeconds(30));
        // Give the re-list time to run, then check nothing was reported as changed.
        WaitFor(() => a.IsUp, "a to reconnect", TimeSpan.FromSeconds(30));
        Thread.Sleep(500);
        Assert.Equal(0, changes);
        Assert.Equal(1, logB.Count("keeping the last known state"));
        Assert.Equal(before.Nodes["node-a"], b.Current.Nodes["node-a"]);

        await a.PublishIpCacheAsync([Entry("node-a", "10.0.1.5/32", 300), Entry("node-a", "10.0.1.7/32", 300)], None);
        WaitFor(() => b.Current.IpCache.Count == 2, "a write after the restart at b");
        // The snapshot is published before the Changed event runs: wait for the event too.
        WaitFor(() => Volatile.Read(ref changes) >= 1, "the change event at b");
    }

    [SkippableFact]
    public async Task WatchBehindCompaction_Resyncs_WithoutLosingEvents()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var logB = new LogSink();
        await using var a = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        await a.RegisterNodeAsync(Node("node-a", 1), None);
        await using var b = await ClusterClient.ConnectAsync(etcd.Options(), logB.Add);
        long listed = b.Current.Revision;

        // Changes b has not seen, then a compaction past b's list revision.
        for (int i = 0; i < 20; i++)
        {
            await a.PublishIpCacheAsync(Enumerable.Range(0, i + 1).Select(k => Entry("node-a", $"10.0.1.{k + 1}/32", 300)).ToList(), None);
        }
        await a.PutPoliciesAsync([new PolicyRecord("CiliumNetworkPolicy/default/allow-web", SamplePolicies.Cnp("allow-web", "default"))], None);
        using var raw = Raw(etcd);
        var head = await raw.GetAsync("nothing");
        await raw.CompactAsync(new CompactionRequest { Revision = head.Header.Revision, Physical = true });
        Assert.True(head.Header.Revision > listed + 1);

        int changes = 0;
        b.Changed += _ => Interlocked.Increment(ref changes);
        await b.StartWatchingAsync(None);
        WaitFor(() => b.Current.IpCache.Count == 20 && b.Current.Policies.Count == 1, "b to resync after the compaction");
        Assert.Equal(1, logB.Count("fell behind etcd's compaction"));
        Assert.True(changes >= 1);

        // And it keeps watching afterwards.
        await a.DeletePolicyAsync("CiliumNetworkPolicy/default/allow-web", None);
        WaitFor(() => b.Current.Policies.Count == 0, "a delete after the resync");
    }

    [SkippableFact]
    public async Task Tls_ClientCertificateAccepted_NoCertificateRefusedClearly()
    {
        EtcdServer.SkipUnlessInstalled();
        Skip.IfNot(File.Exists("/usr/bin/openssl"), "openssl is not installed");
        string dir = Path.Combine(Path.GetTempPath(), $"gw-tls-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            var tls = TlsFiles.Create(dir);
            using var etcd = new EtcdServer(tls);
            await using (var ok = await ClusterClient.ConnectAsync(etcd.Options(), _ => { }))
            {
                await ok.RegisterNodeAsync(Node("node-tls", 4), None);
                Assert.True(ok.IsUp);
                var leases = await ok.GetNodeLeasesAsync(None);
                Assert.True(leases["node-tls"] > TimeSpan.Zero);
            }
            var options = etcd.Options(withClientCert: false);
            var watch = Stopwatch.StartNew();
            var e = await Assert.ThrowsAsync<KvStoreUnavailableException>(() => ClusterClient.ConnectAsync(options, _ => { }));
            Assert.Contains("TLS", e.Message);
            Assert.Contains("KVStoreCert", e.Message);
            Assert.DoesNotContain("\n", e.Message);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(8), $"refusal took {watch.Elapsed}");

            // A CA that did not sign etcd's certificate is refused too.
            string otherDir = Path.Combine(dir, "other");
            var other = TlsFiles.Create(otherDir);
            var wrongCa = KvStoreOptions.Parse(etcd.Url, other.Ca, tls.ClientCert, tls.ClientKey);
            var e2 = await Assert.ThrowsAsync<KvStoreUnavailableException>(() => ClusterClient.ConnectAsync(wrongCa, _ => { }));
            Assert.Contains("TLS", e2.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [SkippableFact]
    public async Task MalformedRecords_AreLoggedOnceAndIgnored_AndTheWatchGoesOn()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        using var raw = Raw(etcd);
        var log = new LogSink();
        await using var b = await ClusterClient.ConnectAsync(etcd.Options(), log.Add);
        await b.StartWatchingAsync(None);
        string good = RecordCodec.EncodeNode(Node("node-ok", 1) with { Cluster = "default" });
        var bad = new Dictionary<string, string>
        {
            ["cilium/state/nodes/v1/default/bad-json"] = "{not json",
            ["cilium/state/nodes/v1/default/unknown-field"] = good.Replace("\"Name\":\"node-ok\"", "\"Name\":\"unknown-field\",\"Surprise\":1", StringComparison.Ordinal),
            ["cilium/state/nodes/v1/default/wrong-type"] = good.Replace("\"WireguardPort\":51871", "\"WireguardPort\":\"51871\"", StringComparison.Ordinal).Replace("node-ok", "wrong-type", StringComparison.Ordinal),
            ["cilium/state/nodes/v1/default/impostor"] = good, // names node-ok under another node's key
            ["cilium/state/nodes/v1/default/bad-key"] = good.Replace("node-ok", "bad-key", StringComparison.Ordinal).Replace(Node("x").WireGuardPublicKey, "short", StringComparison.Ordinal),
            ["cilium/state/ip/v1/default/10.0.9.9"] = RecordCodec.EncodeEntry(Entry("node-ok", "10.0.9.8/32", 300)),
            ["cilium/state/ip/v1/default/10.0.9.7"] = "[]",
            ["cilium/state/identities/v1/id/12"] = "k8s:app=low;",
            ["cilium/state/identities/v1/id/abc"] = "k8s:app=x;",
            ["gateway/state/policies/v1/default/CiliumNetworkPolicy/default/p"] = "{\"Name\":\"CiliumNetworkPolicy/default/p\",\"Yaml\":\"kind: Nope\"}",
        };
        foreach (var (k, v) in bad)
        {
            await raw.PutAsync(k, v);
        }
        await raw.PutAsync("cilium/state/nodes/v1/default/node-ok", good);
        WaitFor(() => b.Current.Nodes.ContainsKey("node-ok"), "the good record after the bad ones");
        WaitFor(() => bad.Keys.All(k => log.Count(k) == 1), "one log line per bad key");
        Assert.Single(b.Current.Nodes);
        Assert.Empty(b.Current.IpCache);
        Assert.Empty(b.Current.Identities);
        Assert.Empty(b.Current.Policies);
        Assert.True(b.IsUp);

        // Same bad bytes again (e.g. after a re-list): not logged again. A fix makes it count.
        await raw.PutAsync("cilium/state/nodes/v1/default/bad-json", "{not json");
        await raw.PutAsync("cilium/state/ip/v1/default/10.0.9.8", RecordCodec.EncodeEntry(Entry("node-ok", "10.0.9.8/32", 300)));
        WaitFor(() => b.Current.IpCache.ContainsKey("10.0.9.8/32"), "a good entry after the bad ones");
        Assert.Equal(1, log.Count("cilium/state/nodes/v1/default/bad-json"));

        // A good record turned bad is dropped.
        await raw.PutAsync("cilium/state/nodes/v1/default/node-ok", "null");
        WaitFor(() => b.Current.Nodes.Count == 0, "the spoiled record to be dropped");
    }

    [SkippableFact]
    public async Task SeveralEndpoints_FirstDead_StillWorks()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var options = KvStoreOptions.Parse($"http://127.0.0.1:{EtcdServer.FreePort()},{etcd.Url}", null, null, null);
        await using var c = await ClusterClient.ConnectAsync(options, _ => { });
        await c.StartWatchingAsync(None);
        for (int i = 0; i < 5; i++)
        {
            await c.RegisterNodeAsync(Node("node-m", 1) with { BootId = $"boot-{i}" }, None);
        }
        WaitFor(() => c.Current.Nodes.TryGetValue("node-m", out var n) && n.BootId == "boot-4", "own record through the live endpoint");
    }

    [SkippableFact]
    public async Task UnreachableEtcd_FailsWithinTheDeadline()
    {
        var options = new KvStoreOptions { Endpoints = [new Uri($"http://127.0.0.1:{EtcdServer.FreePort()}")], RequestTimeout = TimeSpan.FromSeconds(2) };
        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<KvStoreUnavailableException>(() => ClusterClient.ConnectAsync(options, _ => { }));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
        Assert.Contains("127.0.0.1", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
