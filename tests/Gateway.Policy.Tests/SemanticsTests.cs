using Gateway.Datapath;

namespace Gateway.Policy.Tests;

public class SemanticsTests
{
    private const byte Tcp = IpProtocol.Tcp, Udp = IpProtocol.Udp;

    [Fact]
    public void DefaultDenySwitchesPerDirection()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: only-ingress}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              ingress:
              - fromEndpoints: [{matchLabels: {app: a}}]
            """);
        var b = s.GetPolicy(s.Id("b"))!;
        Assert.True(b.Ingress.Enforced);
        Assert.False(b.Egress.Enforced);
        Assert.True(s.Allowed("b", "8.8.8.8", Tcp, 443));     // egress of b unrestricted
        Assert.False(s.Allowed("c", "b", Tcp, 80));          // ingress of b default deny
        Assert.True(s.Allowed("a", "b", Tcp, 80));
        Assert.Null(s.GetPolicy(s.Id("c")));                 // c is selected by nothing
    }

    [Fact]
    public void AllowsUnionAcrossPolicies()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: one}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              ingress:
              - fromEndpoints: [{matchLabels: {app: a}}]
                toPorts: [{ports: [{port: "80", protocol: TCP}]}]
            ---
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: two}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              ingress:
              - fromEndpoints: [{matchLabels: {app: c}}]
              - toPorts: [{ports: [{port: "53", protocol: UDP}]}]
            """);
        Assert.True(s.Allowed("a", "b", Tcp, 80));
        Assert.False(s.Allowed("a", "b", Tcp, 81));
        Assert.True(s.Allowed("a", "b", Udp, 53));           // L4-only rule of policy two
        Assert.True(s.Allowed("c", "b", Tcp, 9999));         // L3-only rule of policy two
        Assert.True(s.Allowed("8.8.8.8", "b", Udp, 53));
        Assert.False(s.Allowed("8.8.8.8", "b", Tcp, 80));
        var v = s.Lookup(s.Id("b"), Direction.Ingress, s.Id("a"), Tcp, 80);
        Assert.Equal("one", s.RuleOf(v)!.PolicyName);
    }

    [Fact]
    public void DenyBeatsAllowRegardlessOfSpecificity()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              ingress:
              - fromEndpoints: [{matchLabels: {app: a}}]
                toPorts: [{ports: [{port: "80", protocol: TCP}]}]
              ingressDeny:
              - toPorts: [{ports: [{port: "1", endPort: 1000, protocol: ANY}]}]
            """);
        var v = s.Lookup(s.Id("b"), Direction.Ingress, s.Id("a"), Tcp, 80);
        Assert.Equal(VerdictKind.Denied, v.Kind);
        Assert.Equal("spec.ingressDeny[0]", s.RuleOf(v)!.Path);
        Assert.Equal(VerdictKind.DefaultDenied, s.Lookup(s.Id("b"), Direction.Ingress, s.Id("a"), Tcp, 1001).Kind);
    }

    [Fact]
    public void DenyOnlyPolicyStillEnablesDefaultDeny()
    {
        // Cilium: "If not specified, the default is true for each traffic direction that has rules"
        // (Ingress or IngressDeny), see enableDefaultDeny in the CNP reference.
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              ingressDeny:
              - fromEntities: [world]
            """);
        Assert.False(s.Allowed("a", "b", Tcp, 80));
        Assert.Equal(VerdictKind.Denied, s.Lookup(s.Id("b"), Direction.Ingress, ReservedIdentity.World, Tcp, 80).Kind);
    }

    [Fact]
    public void EnableDefaultDenyFalseMakesADefaultAllowPolicy()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              enableDefaultDeny: {ingress: false}
              ingress:
              - fromEndpoints: [{matchLabels: {app: a}}]
              ingressDeny:
              - fromEndpoints: [{matchLabels: {app: c}}]
            """);
        Assert.True(s.Allowed("8.8.8.8", "b", Tcp, 80));
        Assert.True(s.Allowed("a", "b", Tcp, 80));
        Assert.False(s.Allowed("c", "b", Tcp, 80));
    }

    [Fact]
    public void EmptyRuleSelectsButAllowsNothingWhileEmptySectionListAlsoEnforces()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              ingress:
              - {}
              egress: []
            """);
        var b = s.GetPolicy(s.Id("b"))!;
        Assert.True(b.Ingress.Enforced);
        Assert.True(b.Egress.Enforced);
        Assert.Equal(0, b.Ingress.EntryCount);
        Assert.False(s.Allowed("a", "b", Tcp, 80));
    }

    [Fact]
    public void ClusterEntityCoversEndpointsAndNodesButNotWorld()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              ingress:
              - fromEntities: [cluster]
            """);
        Assert.True(s.Allowed("p", "b", Tcp, 80));
        Assert.True(s.Allowed("host", "b", Tcp, 80));
        Assert.True(s.Allowed("node2", "b", Tcp, 80));
        Assert.False(s.Allowed("1.2.3.4", "b", Tcp, 80));
    }

    [Fact]
    public void ClusterwideSelectorsWithoutNamespaceSelectAllPods()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumClusterwideNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: a}}
              ingress:
              - fromEndpoints: [{matchLabels: {app: d}}]
            """);
        Assert.True(s.Allowed("d", "a", Tcp, 80));
        Assert.True(s.Allowed("d", "p", Tcp, 80));           // subject in namespace prod too
        Assert.False(s.Allowed("b", "p", Tcp, 80));
    }

    [Fact]
    public void EndPortRangesUseNoEntryPerPort()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: b}}
              ingress:
              - toPorts: [{ports: [{port: "1024", endPort: 65535, protocol: TCP}, {port: "20000", endPort: 20010, protocol: UDP}]}]
              ingressDeny:
              - toPorts: [{ports: [{port: "8000", endPort: 8099, protocol: TCP}]}]
            """);
        var map = s.GetPolicy(s.Id("b"))!.Ingress;
        Assert.True(map.EntryCount <= 4, $"{map.EntryCount} entries");
        Assert.False(s.Allowed("a", "b", Tcp, 1023));
        Assert.True(s.Allowed("a", "b", Tcp, 1024));
        Assert.True(s.Allowed("a", "b", Tcp, 7999));
        Assert.False(s.Allowed("a", "b", Tcp, 8000));
        Assert.False(s.Allowed("a", "b", Tcp, 8099));
        Assert.True(s.Allowed("a", "b", Tcp, 8100));
        Assert.True(s.Allowed("a", "b", Tcp, 65535));
        Assert.True(s.Allowed("a", "b", Udp, 20005));
        Assert.False(s.Allowed("a", "b", Udp, 20011));
    }

    [Fact]
    public void KubernetesNetworkPolicySemantics()
    {
        var s = Helpers.Compile("""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: db, namespace: default}
            spec:
              podSelector: {matchLabels: {tier: db}}
              policyTypes: [Ingress, Egress]
              ingress:
              - from:
                - podSelector: {matchLabels: {app: a}}
                - namespaceSelector: {matchLabels: {team: web}}
                - ipBlock: {cidr: 172.16.0.0/16, except: [172.16.1.0/24]}
                ports:
                - {protocol: TCP, port: 5432}
                - {protocol: UDP, port: 7000, endPort: 7010}
              egress:
              - to:
                - namespaceSelector: {matchLabels: {team: payments}}
                  podSelector: {matchLabels: {app: a}}
            """);
        Assert.True(s.Allowed("a", "c", Tcp, 5432));
        Assert.False(s.Allowed("a", "c", Tcp, 5433));
        Assert.False(s.Allowed("p", "c", Tcp, 5432));        // app=a but namespace prod: podSelector is namespace-local
        Assert.True(s.Allowed("d", "c", Tcp, 5432));         // namespace team=web
        Assert.True(s.Allowed("d", "c", Udp, 7010));
        Assert.True(s.Allowed("172.16.9.9", "c", Tcp, 5432));
        Assert.False(s.Allowed("172.16.1.9", "c", Tcp, 5432));
        Assert.False(s.Allowed("b", "c", Tcp, 5432));
        Assert.True(s.Allowed("c", "p", Tcp, 443));          // egress: namespace team=payments AND app=a
        Assert.False(s.Allowed("c", "a", Tcp, 443));
        Assert.False(s.Allowed("c", "8.8.8.8", Udp, 53));
    }

    [Fact]
    public void KubernetesDefaultsIngressOnlyAndEmptyRuleAllowsAll()
    {
        var s = Helpers.Compile("""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: deny-all}
            spec:
              podSelector: {}
            ---
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: allow-all, namespace: dev}
            spec:
              podSelector: {}
              ingress: [{}]
            """);
        Assert.False(s.Allowed("a", "b", Tcp, 80));          // default: policyTypes [Ingress], no rules
        Assert.True(s.Allowed("b", "8.8.8.8", Tcp, 80));     // egress untouched
        Assert.True(s.Allowed("8.8.8.8", "d", Udp, 9));      // `ingress: [{}]` allows everything
        Assert.True(s.Allowed("a", "d", Tcp, 1));
    }

    [Fact]
    public void EndpointAddressesWinOverCidrsAndUnknownAddressesAreWorld()
    {
        var s = Helpers.Compile("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: a}}
              egress:
              - toCIDR: [10.0.0.0/8]
            """);
        Assert.Equal(s.Id("b"), s.IpCache.Lookup(IpAddress.Parse("10.0.0.2")));
        Assert.Equal(ReservedIdentity.World, s.IpCache.Lookup(IpAddress.Parse("11.0.0.1")));
        Assert.Equal(ReservedIdentity.World, s.IpCache.Lookup(IpAddress.Parse("fd00::1")));
        Assert.True(s.IpCache.Lookup(IpAddress.Parse("10.9.9.9")) > ReservedIdentity.LocalScope);
        Assert.False(s.Allowed("a", "b", Tcp, 80));
        Assert.True(s.Allowed("a", "10.9.9.9", Tcp, 80));
        Assert.False(s.Allowed("a", "11.0.0.1", Tcp, 80));
    }

    [Fact]
    public void IdentitiesAreSharedPerLabelSetAndStableAcrossRestarts()
    {
        string store = Path.Combine(Path.GetTempPath(), $"gw-ids-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        try
        {
            var first = new IdentityAllocator(store);
            var t1 = EndpointFile.Parse("""
                endpoints:
                  - {name: x1, ips: [10.1.0.1], labels: {app: x}}
                  - {name: x2, ips: [10.1.0.2], labels: {app: x}}
                  - {name: y, ips: [10.1.0.3], labels: {app: y}}
                """, "e.yaml", first);
            var x = t1.FindByName("x1")!.Identity.Id;
            Assert.Equal(x, t1.FindByName("x2")!.Identity.Id);
            Assert.True(x >= 256 && x < (1 << 24));
            var y = t1.FindByName("y")!.Identity.Id;
            Assert.NotEqual(x, y);

            // A new process with the same store, labels seen in a different order: same numbers.
            var second = new IdentityAllocator(store);
            var t2 = EndpointFile.Parse("""
                endpoints:
                  - {name: z, ips: [10.1.0.9], labels: {app: z}}
                  - {name: y, ips: [10.1.0.3], labels: {app: y}}
                  - {name: x1, ips: [10.1.0.1], labels: {app: x}}
                """, "e.yaml", second);
            Assert.Equal(x, t2.FindByName("x1")!.Identity.Id);
            Assert.Equal(y, t2.FindByName("y")!.Identity.Id);
            Assert.NotEqual(x, t2.FindByName("z")!.Identity.Id);
            Assert.NotEqual(y, t2.FindByName("z")!.Identity.Id);
            Assert.Equal(ReservedIdentity.RemoteNode, EndpointFile.Parse("""
                endpoints: [{name: n, ips: [1.1.1.1], labels: {"reserved:remote-node": ""}}]
                """, "e.yaml", second).FindByName("n")!.Identity.Id);
        }
        finally
        {
            File.Delete(store);
        }
    }
}
