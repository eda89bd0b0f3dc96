namespace Gateway.Policy.Tests;

public class LoaderErrorTests
{
    [Theory]
    [InlineData("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: ok}
        spec:
          endpointSelector: {}
          ingress: [{fromEntities: [world]}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: bad}
        spec:
          endpointSelector: {}
          ingress:
          - toPorts:
            - ports:
              - port: "http"
        """, 2, "spec.ingress[0].toPorts[0].ports[0].port", 16, "named port")]
    [InlineData("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: bad}
        spec:
          endpointSelector: {}
          egress:
          - toEntities: [everything]
        """, 1, "spec.egress[0].toEntities[0]", 7, "unknown entity 'everything'")]
    [InlineData("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: bad}
        spec:
          endpointSelector: {}
          egress:
          - toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]
        """, 1, "spec.egress[0].toCIDRSet[0].except[0]", 7, "not inside 10.0.0.0/8")]
    [InlineData("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: bad}
        spec:
          endpointSelector: {}
          ingress:
          - fromEndpoint: [{}]
        """, 1, "spec.ingress[0].fromEndpoint", 7, "unknown field 'fromEndpoint'")]
    [InlineData("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: bad}
        spec:
          endpointSelector: {}
          ingress:
          - toPorts:
            - ports: [{port: "80", endPort: 70}]
        """, 1, "spec.ingress[0].toPorts[0].ports[0].endPort", 8, "endPort 70 is below port 80")]
    [InlineData("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: bad}
        spec:
          endpointSelector: {}
          ingress:
          - toPorts:
            - ports: [{port: "80", protocol: ICMP}]
        """, 1, "spec.ingress[0].toPorts[0].ports[0].protocol", 8, "not TCP, UDP, SCTP or ANY")]
    [InlineData("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: bad}
        spec:
          endpointSelector: {}
          ingress:
          - toPorts:
            - ports: [{port: "80"}]
              rules: {http: [{method: GET}]}
        """, 1, "spec.ingress[0].toPorts[0].rules", 9, "L7 rules")]
    [InlineData("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: bad}
        spec:
          podSelector: {}
          ingress:
          - from:
            - ipBlock: {cidr: 10.0.0.0/33}
        """, 1, "spec.ingress[0].from[0].ipBlock.cidr", 8, "not a CIDR")]
    [InlineData("""
        apiVersion: v1
        kind: Service
        metadata: {name: svc}
        """, 1, "kind", 2, "unsupported kind 'Service'")]
    [InlineData("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: bad}
        spec:
          endpointSelector:
            matchExpressions: [{key: app, operator: Like, values: [x]}]
        """, 1, "spec.endpointSelector.matchExpressions[0].operator", 6, "unknown operator 'Like'")]
    public void ErrorsNameFileDocumentFieldAndLine(string yaml, int document, string field, int line, string problem)
    {
        var e = Helpers.LoadError(yaml);
        Assert.Equal("bad.yaml", e.File);
        Assert.Equal(document, e.Document);
        Assert.Equal(field, e.Field);
        Assert.Equal(line, e.Line);
        Assert.Contains(problem, e.Problem);
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith($"bad.yaml: document {document}: {field} (line {line}): ", e.Message);
    }

    [Fact]
    public void YamlSyntaxErrorsNameTheDocument()
    {
        var e = Helpers.LoadError("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: a}
            spec: {endpointSelector: {}}
            ---
            apiVersion: cilium.io/v2
            kind: [unclosed
            """);
        Assert.Equal(2, e.Document);
        Assert.Contains("YAML syntax error", e.Message);
    }

    [Fact]
    public void RandomTextNeverThrowsAnythingButLoadErrors()
    {
        var rng = new Random(1234);
        const string alphabet = "abc:-[]{}\n  #'\"0123456789/.,&*!|>%@`";
        for (int i = 0; i < 500; i++)
        {
            var chars = new char[rng.Next(0, 120)];
            for (int j = 0; j < chars.Length; j++)
            {
                chars[j] = alphabet[rng.Next(alphabet.Length)];
            }
            try
            {
                PolicyLoader.Parse(new string(chars), "fuzz.yaml");
            }
            catch (PolicyLoadException)
            {
            }
        }
    }

    [Fact]
    public void BadFileNeverHalfAppliesAndThePreviousPolicyStays()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"gw-policy-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string endpoints = Path.Combine(dir, "endpoints.yaml");
            File.WriteAllText(endpoints, Helpers.Endpoints);
            string policies = Path.Combine(dir, "policies");
            Directory.CreateDirectory(policies);
            File.WriteAllText(Path.Combine(policies, "a.yaml"), """
                apiVersion: cilium.io/v2
                kind: CiliumNetworkPolicy
                metadata: {name: allow-a}
                spec:
                  endpointSelector: {matchLabels: {app: b}}
                  ingress: [{fromEndpoints: [{matchLabels: {app: a}}]}]
                """);
            var engine = new PolicyEngine(new IdentityAllocator(), new Conntrack(1024), new FlowEventRing(16));
            Assert.True(engine.TryLoad(policies, endpoints, out var err), err);
            var good = engine.Current;
            Assert.True(good.Allowed("a", "b", Datapath.IpProtocol.Tcp, 80));

            // A second file: the first document would open everything, the second is broken.
            File.WriteAllText(Path.Combine(policies, "b.yaml"), """
                apiVersion: cilium.io/v2
                kind: CiliumNetworkPolicy
                metadata: {name: open}
                spec:
                  endpointSelector: {matchLabels: {app: b}}
                  ingress: [{fromEntities: [all]}]
                ---
                apiVersion: cilium.io/v2
                kind: CiliumNetworkPolicy
                metadata: {name: broken}
                spec:
                  endpointSelector: {matchLabels: {app: b}}
                  ingress: [{fromCIDR: [not-a-cidr]}]
                """);
            Assert.False(engine.TryLoad(policies, endpoints, out err));
            Assert.Contains("b.yaml: document 2: spec.ingress[0].fromCIDR[0]", err);
            Assert.Same(good, engine.Current);
            Assert.False(engine.Current.Allowed("c", "b", Datapath.IpProtocol.Tcp, 80));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
