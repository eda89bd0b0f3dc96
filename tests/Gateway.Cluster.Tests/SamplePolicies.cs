namespace Gateway.Cluster.Tests;

/// <summary>Policy YAML the cluster and CLI tests store in etcd (linked into Gateway.Cli.Tests).</summary>
public static class SamplePolicies
{
    /// <summary>A CiliumNetworkPolicy letting app=client reach app=web.</summary>
    public static string Cnp(string name, string ns) => $"""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata:
          name: {name}
          namespace: {ns}
        spec:
          endpointSelector:
            matchLabels:
              app: web
          ingress:
          - fromEndpoints:
            - matchLabels:
                app: client
        """;
}
