using Gateway.Datapath;

namespace Gateway.Policy.Tests;

/// <summary>Small builders for tests: YAML in, snapshot out.</summary>
internal static class Helpers
{
    public const string Endpoints = """
        namespaces:
          - {name: prod, labels: {team: payments}}
          - {name: dev, labels: {team: web}}
        endpoints:
          - {name: a, namespace: default, ips: [10.0.0.1], labels: {app: a}}
          - {name: b, namespace: default, ips: [10.0.0.2], labels: {app: b}}
          - {name: c, namespace: default, ips: [10.0.0.3], labels: {app: c, tier: db}}
          - {name: p, namespace: prod, ips: [10.0.1.1], labels: {app: a}}
          - {name: d, namespace: dev, ips: [10.0.2.1], labels: {app: d}}
          - {name: host, ips: [192.168.0.1], labels: {"reserved:host": ""}}
          - {name: node2, ips: [192.168.0.2], labels: {"reserved:remote-node": ""}}
        """;

    public static PolicySnapshot Compile(string policyYaml, string? endpointsYaml = null)
    {
        var identities = new IdentityAllocator();
        var endpoints = EndpointFile.Parse(endpointsYaml ?? Endpoints, "endpoints.yaml", identities);
        var docs = PolicyLoader.Parse(policyYaml, "test.yaml");
        return PolicyCompiler.Compile(new PolicySet(docs, ["test.yaml"]), endpoints);
    }

    public static uint Id(this PolicySnapshot s, string endpoint) => s.Endpoints.FindByName(endpoint)!.Identity.Id;

    /// <summary>Egress at the source then ingress at the destination, like the datapath and trace.</summary>
    public static bool Allowed(this PolicySnapshot s, string from, string to, byte proto, ushort port)
    {
        uint src = Resolve(s, from), dst = Resolve(s, to);
        return s.Lookup(src, Direction.Egress, dst, proto, port).IsAllowed &&
               s.Lookup(dst, Direction.Ingress, src, proto, port).IsAllowed;
    }

    public static uint Resolve(PolicySnapshot s, string who) =>
        IpAddress.TryParse(who, out var ip) ? s.IpCache.Lookup(ip) : s.Id(who);

    public static PolicyLoadException LoadError(string yaml) =>
        Assert.Throws<PolicyLoadException>(() => PolicyLoader.Parse(yaml, "bad.yaml"));
}
