using BenchmarkDotNet.Attributes;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.Benchmarks;

/// <summary>Builds a policy with N ingress rules on one server endpoint, each from one client identity to one port range.</summary>
internal static class PolicyWorkload
{
    public const int Clients = 10_000;

    public static (PolicySet Policies, EndpointTable Endpoints) Build(int rules)
    {
        var identities = new IdentityAllocator();
        var endpoints = new EndpointTable(identities);
        endpoints.Add("server", "default", [IpAddress.Parse("10.0.0.1")], [new Label("k8s", "app", "server")]);
        int clients = Math.Min(rules, Clients);
        for (int c = 0; c < clients; c++)
        {
            endpoints.Add($"client-{c}", "default", [IpAddress.FromV4(0x0A010000u + (uint)c)], [new Label("k8s", "app", $"client-{c}")]);
        }
        var subject = new LabelSelector([
            new SelectorRequirement("any", "app", SelectorOperator.In, ["server"]),
            new SelectorRequirement("k8s", LabelSources.NamespaceKey, SelectorOperator.In, ["default"]),
        ]);
        var list = new List<PolicyRule>(rules);
        for (int i = 0; i < rules; i++)
        {
            // Rule i: from client (i mod C), TCP ports [p, p+3] where p grows with i / C,
            // so every rule is distinct; every 50th rule is a deny on one port.
            int c = i % clients;
            ushort p = (ushort)(1 + 4 * (i / clients));
            var peer = new EndpointPeer(new LabelSelector([
                new SelectorRequirement("any", "app", SelectorOperator.In, [$"client-{c}"]),
                new SelectorRequirement("k8s", LabelSources.NamespaceKey, SelectorOperator.In, ["default"]),
            ]));
            bool deny = i % 50 == 49;
            var origin = new RuleOrigin("bench.yaml", 1, PolicyKind.CiliumNetworkPolicy, "bench", "default", $"spec.ingress[{i}]", Direction.Ingress, deny, i);
            list.Add(new PolicyRule(Direction.Ingress, deny, [peer], [new PortMatch(IpProtocol.Tcp, p, (ushort)(p + (deny ? 0 : 3)))], origin));
        }
        var spec = new PolicySpec(subject, true, false, list, "spec");
        var doc = new PolicyDocument("bench.yaml", 1, PolicyKind.CiliumNetworkPolicy, "bench", "default", [spec]);
        return (new PolicySet([doc], ["bench.yaml"]), endpoints);
    }
}

/// <summary>
/// The iptables-style baseline: one flat list of rules scanned in order for every packet
/// (deny rules first, then the first matching allow), the cost growing with the rule count.
/// </summary>
internal sealed class LinearRuleScan
{
    private readonly (uint Peer, byte Protocol, ushort Low, ushort High)[] _deny;
    private readonly (uint Peer, byte Protocol, ushort Low, ushort High)[] _allow;

    public LinearRuleScan(PolicySet policies, PolicySnapshot snapshot)
    {
        var deny = new List<(uint, byte, ushort, ushort)>();
        var allow = new List<(uint, byte, ushort, ushort)>();
        var byName = snapshot.Endpoints.All.ToDictionary(e => e.Labels.ValuesOf("k8s", "app").First(), e => e.Identity.Id);
        foreach (var rule in policies.Rules)
        {
            var app = ((EndpointPeer)rule.Peers![0]).Selector.Requirements[0].Values[0];
            foreach (var p in rule.Ports!)
            {
                (rule.Deny ? deny : allow).Add((byName[app], p.Protocol, p.Low, p.High));
            }
        }
        _deny = deny.ToArray();
        _allow = allow.ToArray();
    }

    public VerdictKind Lookup(uint peer, byte protocol, ushort port)
    {
        foreach (var r in _deny)
        {
            if (r.Peer == peer && r.Protocol == protocol && port >= r.Low && port <= r.High)
            {
                return VerdictKind.Denied;
            }
        }
        foreach (var r in _allow)
        {
            if (r.Peer == peer && r.Protocol == protocol && port >= r.Low && port <= r.High)
            {
                return VerdictKind.Allowed;
            }
        }
        return VerdictKind.DefaultDenied;
    }
}

/// <summary>Verdict lookup cost against rule count: compiled hash map vs. linear rule scan.</summary>
[MemoryDiagnoser]
[ShortRunJob]
public class PolicyLookupBenchmarks
{
    private const int Batch = 1024;
    private PolicyMap _map = null!;
    private LinearRuleScan _scan = null!;
    private uint[] _peers = null!;
    private ushort[] _ports = null!;

    [Params(10, 1_000, 10_000, 100_000)]
    public int Rules { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var (policies, endpoints) = PolicyWorkload.Build(Rules);
        var snapshot = PolicyCompiler.Compile(policies, endpoints);
        _map = snapshot.GetPolicy(endpoints.FindByName("server")!.Identity.Id)!.Ingress;
        _scan = new LinearRuleScan(policies, snapshot);
        var clients = endpoints.All.Where(e => e.Name.StartsWith("client-", StringComparison.Ordinal)).Select(e => e.Identity.Id).ToArray();
        var rng = new Random(42);
        _peers = new uint[Batch];
        _ports = new ushort[Batch];
        int maxPort = 4 * (Rules / Math.Min(Rules, PolicyWorkload.Clients)) + 8;
        for (int i = 0; i < Batch; i++)
        {
            // Mostly known peers, some unknown identities (world); ports spread over the used range.
            _peers[i] = rng.Next(8) == 0 ? ReservedIdentity.World : clients[rng.Next(clients.Length)];
            _ports[i] = (ushort)rng.Next(1, maxPort);
        }
        // Both implementations must agree, or the comparison means nothing.
        for (int i = 0; i < Batch; i++)
        {
            var a = _map.Lookup(_peers[i], IpProtocol.Tcp, _ports[i]).Kind;
            var b = _scan.Lookup(_peers[i], IpProtocol.Tcp, _ports[i]);
            if (a != b)
            {
                throw new InvalidOperationException($"map {a} != scan {b} for peer {_peers[i]} port {_ports[i]}");
            }
        }
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public int CompiledMap()
    {
        int allowed = 0;
        for (int i = 0; i < Batch; i++)
        {
            allowed += _map.Lookup(_peers[i], IpProtocol.Tcp, _ports[i]).IsAllowed ? 1 : 0;
        }
        return allowed;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int LinearScan()
    {
        int allowed = 0;
        for (int i = 0; i < Batch; i++)
        {
            allowed += _scan.Lookup(_peers[i], IpProtocol.Tcp, _ports[i]) == VerdictKind.Allowed ? 1 : 0;
        }
        return allowed;
    }
}

/// <summary>Conntrack hit cost with 100k live flows (lookup of existing flows, half of them as replies).</summary>
[MemoryDiagnoser]
[ShortRunJob]
public class ConntrackBenchmarks
{
    private const int Flows = 100_000;
    private const int Batch = 1024;
    private Conntrack _ct = null!;
    private FlowKey[] _keys = null!;

    [GlobalSetup]
    public void Setup()
    {
        _ct = new Conntrack(Flows * 2);
        var all = new FlowKey[Flows];
        for (int i = 0; i < Flows; i++)
        {
            all[i] = new FlowKey
            {
                Source = IpAddress.FromV4(0x0A000000u + (uint)(i % 5000)), Destination = IpAddress.FromV4(0x0A100000u + (uint)(i / 5000)),
                Protocol = IpProtocol.Tcp, SourcePort = (ushort)(10000 + i % 50000), DestinationPort = 443, TcpFlags = TcpFlag.Ack,
            };
            _ct.Create(all[i], 0);
        }
        var rng = new Random(7);
        _keys = new FlowKey[Batch];
        for (int i = 0; i < Batch; i++)
        {
            var k = all[rng.Next(Flows)];
            _keys[i] = i % 2 == 0 ? k : k.Reversed();
        }
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int Lookup()
    {
        int hits = 0;
        for (int i = 0; i < Batch; i++)
        {
            hits += _ct.Lookup(_keys[i], 1) != CtResult.New ? 1 : 0;
        }
        return hits;
    }
}

/// <summary>Compile time of a 10k-rule policy (10k client identities), and loading the same as YAML.</summary>
[MemoryDiagnoser]
[ShortRunJob]
public class PolicyCompileBenchmarks
{
    private PolicySet _policies = null!;
    private EndpointTable _endpoints = null!;
    private string _yaml = null!;

    [GlobalSetup]
    public void Setup()
    {
        (_policies, _endpoints) = PolicyWorkload.Build(10_000);
        var sb = new System.Text.StringBuilder("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bench}\nspec:\n  endpointSelector: {matchLabels: {app: server}}\n  ingress:\n");
        for (int i = 0; i < 10_000; i++)
        {
            int p = 1 + 4 * (i / PolicyWorkload.Clients);
            sb.Append($"  - fromEndpoints: [{{matchLabels: {{app: client-{i % PolicyWorkload.Clients}}}}}]\n    toPorts: [{{ports: [{{port: \"{p}\", endPort: {p + 3}, protocol: TCP}}]}}]\n");
        }
        _yaml = sb.ToString();
    }

    [Benchmark]
    public PolicySnapshot Compile10kRules() => PolicyCompiler.Compile(_policies, _endpoints);

    [Benchmark]
    public int ParseYaml10kRules() => PolicyLoader.Parse(_yaml, "bench.yaml").Count;
}
