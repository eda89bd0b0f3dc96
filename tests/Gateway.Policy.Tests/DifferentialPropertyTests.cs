using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Gateway.Datapath;

namespace Gateway.Policy.Tests;

/// <summary>
/// For random policies (CNP, CCNP, Kubernetes NetworkPolicy written as YAML) and random flows, the
/// compiled maps + ipcache give the same verdict as <see cref="ReferenceEvaluator"/>, which walks
/// the parsed rules directly: its own selector matching, entity membership, CIDR containment on
/// the peer address, port/protocol test and deny-over-allow precedence, no identities, no maps.
/// </summary>
public class DifferentialPropertyTests
{
    /// <summary>A scenario: the YAML texts and the flows to check, all derived from one seed.</summary>
    public sealed record Scenario(int Seed, string Policies, string Endpoints)
    {
        public override string ToString() => $"seed {Seed}\n--- endpoints\n{Endpoints}\n--- policies\n{Policies}";
    }

    private static readonly string[] Apps = ["a", "b", "c"];
    private static readonly string[] Namespaces = ["default", "prod"];
    private static readonly string[] ExternalIps = ["10.1.2.3", "10.96.0.5", "10.100.1.1", "172.16.0.1", "172.20.0.1", "8.8.8.8", "192.0.2.77", "203.0.113.1"];
    private static readonly (string Cidr, string[] Except)[] Cidrs =
    [
        ("10.0.0.0/8", ["10.96.0.0/12", "10.1.0.0/16"]), ("10.96.0.0/12", ["10.96.0.0/24"]), ("172.16.0.0/12", ["172.16.0.0/16"]),
        ("0.0.0.0/0", ["10.0.0.0/8"]), ("192.0.2.0/24", ["192.0.2.64/26"]), ("8.8.8.8/32", []),
    ];
    private static readonly string[] Entities = ["all", "world", "cluster", "host", "remote-node", "kube-apiserver", "health", "none"];
    private static readonly ushort[] Ports = [0, 1, 53, 79, 80, 81, 443, 1000, 8080, 65535];
    private static readonly byte[] Protocols = [IpProtocol.Tcp, IpProtocol.Udp, IpProtocol.Sctp, IpProtocol.Icmp, 47];

    [Property(MaxTest = 200)]
    public Property CompiledMapsAgreeWithTheReferenceEvaluator() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).Select(Build).ToArbitrary(), Check);

    private static Scenario Build(int seed)
    {
        var rng = new Random(seed);
        var eps = new StringBuilder("namespaces:\n  - {name: prod, labels: {team: payments}}\n  - {name: default}\nendpoints:\n");
        int n = rng.Next(3, 7);
        for (int i = 0; i < n; i++)
        {
            string labels = $"app: {Pick(rng, Apps)}" + (rng.Next(2) == 0 ? $", tier: {Pick(rng, ["x", "y"])}" : "");
            eps.Append($"  - {{name: e{i}, namespace: {Pick(rng, Namespaces)}, ips: [10.0.{i}.1], labels: {{{labels}}}}}\n");
        }
        eps.Append("  - {name: host, ips: [192.168.0.1], labels: {\"reserved:host\": \"\"}}\n");
        eps.Append("  - {name: node2, ips: [192.168.0.2], labels: {\"reserved:remote-node\": \"\"}}\n");

        var pol = new StringBuilder();
        int docs = rng.Next(1, 5);
        for (int d = 0; d < docs; d++)
        {
            pol.Append("---\n");
            int kind = rng.Next(5);
            if (kind == 4)
            {
                AppendKubernetes(rng, pol, d);
            }
            else
            {
                AppendCilium(rng, pol, d, clusterwide: kind == 3);
            }
        }
        return new Scenario(seed, pol.ToString(), eps.ToString());
    }

    private static T Pick<T>(Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];

    private static string Selector(Random rng)
    {
        return rng.Next(6) switch
        {
            0 => "{}",
            1 => $"{{matchLabels: {{app: {Pick(rng, Apps)}}}}}",
            2 => $"{{matchLabels: {{app: {Pick(rng, Apps)}, k8s:io.kubernetes.pod.namespace: {Pick(rng, Namespaces)}}}}}",
            3 => $"{{matchExpressions: [{{key: app, operator: NotIn, values: [{Pick(rng, Apps)}]}}]}}",
            4 => $"{{matchExpressions: [{{key: tier, operator: {Pick(rng, ["Exists", "DoesNotExist"])}}}]}}",
            _ => $"{{matchExpressions: [{{key: app, operator: In, values: [{Pick(rng, Apps)}, {Pick(rng, Apps)}]}}], matchLabels: {{tier: {Pick(rng, ["x", "y"])}}}}}",
        };
    }

    private static void AppendCilium(Random rng, StringBuilder sb, int d, bool clusterwide)
    {
        sb.Append($"apiVersion: cilium.io/v2\nkind: {(clusterwide ? "CiliumClusterwideNetworkPolicy" : "CiliumNetworkPolicy")}\n");
        sb.Append(clusterwide ? $"metadata: {{name: p{d}}}\n" : $"metadata: {{name: p{d}, namespace: {Pick(rng, Namespaces)}}}\n");
        sb.Append($"spec:\n  endpointSelector: {Selector(rng)}\n");
        if (rng.Next(5) == 0)
        {
            sb.Append($"  enableDefaultDeny: {{ingress: {(rng.Next(2) == 0 ? "true" : "false")}, egress: {(rng.Next(2) == 0 ? "true" : "false")}}}\n");
        }
        foreach (var section in new[] { "ingress", "ingressDeny", "egress", "egressDeny" })
        {
            int count = rng.Next(-1, 3); // -1: absent, 0: empty list
            if (count < 0)
            {
                continue;
            }
            if (count == 0)
            {
                sb.Append($"  {section}: []\n");
                continue;
            }
            sb.Append($"  {section}:\n");
            string pfx = section.StartsWith("ingress", StringComparison.Ordinal) ? "from" : "to";
            for (int r = 0; r < count; r++)
            {
                var parts = new List<string>();
                int peers = rng.Next(0, 3);
                for (int p = 0; p < peers; p++)
                {
                    switch (rng.Next(4))
                    {
                        case 0: parts.Add($"{pfx}Endpoints: [{Selector(rng)}]"); break;
                        case 1: parts.Add($"{pfx}Entities: [{Pick(rng, Entities)}]"); break;
                        case 2: parts.Add($"{pfx}CIDR: [{Pick(rng, Cidrs).Cidr}]"); break;
                        default:
                            var (cidr, except) = Pick(rng, Cidrs);
                            string ex = except.Length == 0 || rng.Next(3) == 0 ? "" : $", except: [{Pick(rng, except)}]";
                            parts.Add($"{pfx}CIDRSet: [{{cidr: {cidr}{ex}}}]");
                            break;
                    }
                }
                if (rng.Next(2) == 0)
                {
                    parts.Add($"toPorts: [{{ports: [{PortSpec(rng, kubernetes: false)}, {PortSpec(rng, kubernetes: false)}]}}]");
                }
                if (rng.Next(5) == 0)
                {
                    parts.Add($"icmps: [{{fields: [{{type: {Pick(rng, new[] { "8", "0", "EchoRequest" })}, family: IPv4}}]}}]");
                }
                // Duplicate keys are not valid YAML: keep the first of each.
                var unique = parts.GroupBy(p => p[..p.IndexOf(':')]).Select(g => g.First());
                sb.Append($"  - {{{string.Join(", ", unique)}}}\n");
            }
        }
        if (!sb.ToString().EndsWith("\n", StringComparison.Ordinal))
        {
            sb.Append('\n');
        }
    }

    private static string PortSpec(Random rng, bool kubernetes)
    {
        ushort port = Pick(rng, new ushort[] { 0, 53, 80, 443, 1000, 8080 });
        var fields = new List<string>();
        if (port != 0 || rng.Next(2) == 0)
        {
            fields.Add(kubernetes ? $"port: {port}" : $"port: \"{port}\"");
        }
        if (port != 0 && rng.Next(3) == 0)
        {
            fields.Add($"endPort: {port + rng.Next(0, 500)}");
        }
        string[] protos = kubernetes ? ["TCP", "UDP", "SCTP"] : ["TCP", "UDP", "ANY", "SCTP"];
        if (rng.Next(4) != 0)
        {
            fields.Add($"protocol: {Pick(rng, protos)}");
        }
        return "{" + string.Join(", ", fields) + "}";
    }

    private static void AppendKubernetes(Random rng, StringBuilder sb, int d)
    {
        sb.Append($"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: k{d}, namespace: {Pick(rng, Namespaces)}}}\n");
        sb.Append($"spec:\n  podSelector: {Selector(rng)}\n");
        var types = new List<string>();
        foreach (var (section, peerKey) in new[] { ("ingress", "from"), ("egress", "to") })
        {
            int count = rng.Next(-1, 3);
            if (count < 0)
            {
                continue;
            }
            types.Add(section == "ingress" ? "Ingress" : "Egress");
            sb.Append($"  {section}:\n");
            if (count == 0)
            {
                sb.Append("  - {}\n");
                continue;
            }
            for (int r = 0; r < count; r++)
            {
                var peers = new List<string>();
                for (int p = rng.Next(0, 3); p > 0; p--)
                {
                    peers.Add(rng.Next(4) switch
                    {
                        0 => $"{{podSelector: {Selector(rng)}}}",
                        1 => "{namespaceSelector: {matchLabels: {team: payments}}}",
                        2 => $"{{namespaceSelector: {{}}, podSelector: {Selector(rng)}}}",
                        _ => $"{{ipBlock: {{cidr: {Pick(rng, Cidrs).Cidr}}}}}",
                    });
                }
                var parts = new List<string>();
                if (peers.Count > 0)
                {
                    parts.Add($"{peerKey}: [{string.Join(", ", peers)}]");
                }
                if (rng.Next(2) == 0)
                {
                    parts.Add($"ports: [{PortSpec(rng, kubernetes: true)}]");
                }
                sb.Append($"  - {{{string.Join(", ", parts)}}}\n");
            }
        }
        if (rng.Next(3) == 0)
        {
            sb.Append($"  policyTypes: [{string.Join(", ", types.Count == 0 ? ["Ingress"] : types)}]\n");
        }
    }

    private static bool Check(Scenario scenario)
    {
        var identities = new IdentityAllocator();
        var endpoints = EndpointFile.Parse(scenario.Endpoints, "endpoints.yaml", identities);
        var policies = new PolicySet(PolicyLoader.Parse(scenario.Policies, "random.yaml"), ["random.yaml"]);
        var snapshot = PolicyCompiler.Compile(policies, endpoints);
        var reference = new ReferenceEvaluator(policies, endpoints.All);
        var rng = new Random(scenario.Seed ^ 0x5bd1e995);
        var workloads = endpoints.All.Where(e => e.IsWorkload).ToArray();
        var peerIps = endpoints.All.SelectMany(e => e.Ips).Select(ip => ip.ToString()).Concat(ExternalIps).ToArray();
        for (int i = 0; i < 60; i++)
        {
            var subject = Pick(rng, workloads);
            var dir = rng.Next(2) == 0 ? Direction.Ingress : Direction.Egress;
            var peerIp = IpAddress.Parse(Pick(rng, peerIps));
            byte proto = Pick(rng, Protocols);
            ushort port = proto == IpProtocol.Icmp ? Pick(rng, new ushort[] { 0, 8, 3 }) : Pick(rng, Ports);
            var expected = reference.Decide(subject, dir, peerIp, proto, port);
            var actual = snapshot.Lookup(subject.Identity.Id, dir, snapshot.IpCache.Lookup(peerIp), proto, port).Kind;
            if (expected != actual)
            {
                throw new Xunit.Sdk.XunitException(
                    $"{subject.QualifiedName} {dir} peer {peerIp} {PolicyText.ProtocolName(proto)}/{port}: reference {expected}, compiled {actual}\n{scenario}");
            }
        }
        return true;
    }
}

/// <summary>
/// The slow, obvious evaluator: for one endpoint, direction, peer address and L4 tuple, walk every
/// rule of every policy that selects the endpoint. Shares nothing with the compiler but the parsed
/// rules (and the endpoint list, which says which addresses are endpoints and with what labels).
/// </summary>
internal sealed class ReferenceEvaluator(PolicySet policies, IReadOnlyList<Endpoint> endpoints)
{
    public VerdictKind Decide(Endpoint subject, Direction dir, IpAddress peerIp, byte proto, ushort port)
    {
        var peer = endpoints.FirstOrDefault(e => e.Ips.Contains(peerIp));
        bool enforced = false, allowed = false, denied = false;
        foreach (var spec in policies.Specs)
        {
            if (!Matches(spec.Subject, subject.Labels))
            {
                continue;
            }
            enforced |= dir == Direction.Ingress ? spec.DefaultDenyIngress : spec.DefaultDenyEgress;
            foreach (var rule in spec.Rules)
            {
                if (rule.Direction != dir || !PeerMatches(rule, peer, peerIp) || !L4Matches(rule, proto, port))
                {
                    continue;
                }
                if (rule.Deny)
                {
                    denied = true;
                }
                else
                {
                    allowed = true;
                }
            }
        }
        return denied ? VerdictKind.Denied : allowed ? VerdictKind.Allowed : enforced ? VerdictKind.DefaultDenied : VerdictKind.Unrestricted;
    }

    private static bool L4Matches(PolicyRule rule, byte proto, ushort port)
    {
        if (rule.Ports is null)
        {
            return true;
        }
        foreach (var p in rule.Ports)
        {
            if (p.Protocol == proto && port >= p.Low && port <= p.High)
            {
                return true;
            }
        }
        return false;
    }

    private static bool PeerMatches(PolicyRule rule, Endpoint? peer, IpAddress ip)
    {
        if (rule.Peers is null)
        {
            return true;
        }
        foreach (var sel in rule.Peers)
        {
            bool hit = sel switch
            {
                EndpointPeer e => Matches(e.Selector, peer?.Labels ?? LabelSet.Of(new Label("reserved", "world", ""))),
                EntityPeer { Entity: Entity.All } => true,
                EntityPeer { Entity: Entity.World } => peer is null,
                EntityPeer { Entity: Entity.Cluster } => peer is not null,
                EntityPeer { Entity: Entity.None } => false,
                EntityPeer en => peer is not null && peer.Labels.Contains(new Label("reserved", PolicyText.EntityName(en.Entity), "")),
                CidrPeer c => peer is null && InPrefix(ip, c.Cidr.ToString()) && !c.Except.Any(x => InPrefix(ip, x.ToString())),
                _ => false,
            };
            if (hit)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>IPv4 containment from the prefix text, by shifting 32-bit integers.</summary>
    private static bool InPrefix(IpAddress ip, string prefix)
    {
        var parts = prefix.Split('/');
        var net = System.Net.IPAddress.Parse(parts[0]).GetAddressBytes();
        var addr = ip.ToIPAddress().GetAddressBytes();
        if (net.Length != 4 || addr.Length != 4)
        {
            return false;
        }
        int len = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        uint mask = len == 0 ? 0 : uint.MaxValue << (32 - len);
        uint n = (uint)(net[0] << 24 | net[1] << 16 | net[2] << 8 | net[3]);
        uint a = (uint)(addr[0] << 24 | addr[1] << 16 | addr[2] << 8 | addr[3]);
        return (n & mask) == (a & mask);
    }

    /// <summary>Selector semantics written out again: every requirement must hold.</summary>
    private static bool Matches(LabelSelector selector, LabelSet labels)
    {
        foreach (var r in selector.Requirements)
        {
            var values = labels.Where(l => l.Key == r.Key && (r.Source == "any" || r.Source == l.Source)).Select(l => l.Value).ToList();
            bool ok = r.Operator switch
            {
                SelectorOperator.Exists => values.Count > 0,
                SelectorOperator.DoesNotExist => values.Count == 0,
                SelectorOperator.In => values.Any(r.Values.Contains),
                _ => !values.Any(r.Values.Contains),
            };
            if (!ok)
            {
                return false;
            }
        }
        return true;
    }
}
