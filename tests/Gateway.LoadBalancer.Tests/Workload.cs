using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.LoadBalancer.Tests;

/// <summary>
/// The benchmark's shape, built directly (no YAML): service i has VIP 10.96.x.y (i in the low 16
/// bits), port 80, selector app=svc-i, and backendsPerService pods whose addresses carry i in
/// bits 7..22 so a test can tell which service a backend belongs to.
/// </summary>
internal static class Workload
{
    public static (ServiceLoadBalancer Lb, FlowKey[] Flows) Build(int services, int backendsPerService)
    {
        var endpoints = new EndpointTable(new IdentityAllocator());
        var defs = new List<ServiceDefinition>(services);
        for (int i = 0; i < services; i++)
        {
            for (int b = 0; b < backendsPerService; b++)
            {
                uint addr = 0x0B000000u | ((uint)i << 7) | (uint)b;
                endpoints.Add($"pod-{i}-{b}", "default", [IpAddress.FromV4(addr)], [new Label("k8s", "app", $"svc-{i}")]);
            }
            defs.Add(new ServiceDefinition("bench.yaml", 1, "default", $"svc-{i}", [IpAddress.FromV4(0x0A600000u | (uint)i)],
                [new ServicePortDefinition("http", 80, IpProtocol.Tcp, 8080, null)],
                new Dictionary<string, string> { ["app"] = $"svc-{i}" }, false, ServiceDefinition.DefaultAffinityTimeout));
        }
        var lb = new ServiceLoadBalancer(ServiceTable.Compile(defs, endpoints));
        var r = new Random(1);
        var flows = new FlowKey[4096];
        for (int k = 0; k < flows.Length; k++)
        {
            flows[k] = new FlowKey
            {
                Source = IpAddress.FromV4(0x0A000000u | (uint)r.Next(1 << 16)),
                Destination = IpAddress.FromV4(0x0A600000u | (uint)r.Next(services)),
                SourcePort = (ushort)r.Next(1024, 65536),
                DestinationPort = 80,
                Protocol = IpProtocol.Tcp,
            };
        }
        return (lb, flows);
    }
}
