using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.LoadBalancer.Tests;

/// <summary>Endpoints and services shared by the tests: YAML in, compiled table out.</summary>
internal static class Fixtures
{
    public const string Endpoints = """
        endpoints:
          - {name: client, namespace: default, ips: [10.0.0.5, "fd00::5"], labels: {app: client}}
          - {name: web-1, namespace: default, ips: [10.0.1.1, "fd00::1:1"], labels: {app: web, tier: fe}, ports: [{name: http, port: 8080}]}
          - {name: web-2, namespace: default, ips: [10.0.1.2, "fd00::1:2"], labels: {app: web, tier: fe}, ports: [{name: http, port: 8081}]}
          - {name: web-3, namespace: default, ips: [10.0.1.3], labels: {app: web, tier: fe}}
          - {name: web-other, namespace: prod, ips: [10.0.2.1], labels: {app: web, tier: fe}, ports: [{name: http, port: 8080}]}
          - {name: dns-1, namespace: default, ips: [10.0.3.1], labels: {app: dns}, ports: [{name: dns, port: 5353, protocol: UDP}]}
          - {name: node2, ips: [192.168.0.2], labels: {"reserved:remote-node": ""}}
        """;

    public const string Services = """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.10
          clusterIPs: [10.96.0.10, "fd00:96::10"]
          selector: {app: web}
          ports:
            - {name: http, port: 80, targetPort: http, protocol: TCP}
            - {name: raw, port: 81, targetPort: 9000}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: dns}
        spec:
          clusterIP: 10.96.0.53
          selector: {app: dns}
          ports: [{port: 53, targetPort: dns, protocol: UDP}]
          sessionAffinity: ClientIP
          sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: empty}
        spec:
          clusterIP: 10.96.0.99
          selector: {app: nothing}
          ports: [{port: 80}]
        """;

    public static EndpointTable LoadEndpoints(string? yaml = null) =>
        EndpointFile.Parse(yaml ?? Endpoints, "endpoints.yaml", new IdentityAllocator());

    public static ServiceTable Compile(string? services = null, string? endpoints = null, ServiceTableOptions? options = null) =>
        ServiceTable.Compile(ServiceLoader.Parse(services ?? Services, "services.yaml"), LoadEndpoints(endpoints), options);

    public static FlowKey Flow(string src, ushort sport, string dst, ushort dport, byte proto = IpProtocol.Tcp) => new()
    {
        Source = IpAddress.Parse(src),
        Destination = IpAddress.Parse(dst),
        SourcePort = sport,
        DestinationPort = dport,
        Protocol = proto,
    };

    public static ServiceLoadException LoadError(string yaml) =>
        Assert.Throws<ServiceLoadException>(() => ServiceLoader.Parse(yaml, "bad.yaml"));
}
