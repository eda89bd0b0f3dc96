using System.Text.Json;
using Gateway.Datapath;

namespace Gateway.LoadBalancer;

/// <summary>
/// What the datapath's service step does with one packet (the `--services` part of
/// `gateway policy trace`): which frontend the destination is, which backend Maglev (or random,
/// or affinity) picks for this client address and source port, or NO_SERVICE.
/// </summary>
public sealed record ServiceTraceResult(ServiceLookup Lookup, string? Service, string? Frontend, int BackendCount,
    ServiceBackend? Backend, string Algorithm, IpAddress Client, ushort ClientPort)
{
    public string ToText()
    {
        return Lookup switch
        {
            ServiceLookup.NotService => "Service: none (the destination is no service frontend)",
            ServiceLookup.NoBackends => $"Service: {Service} {Frontend} has no backends: DROPPED (NO_SERVICE, Cilium drop reason 158)",
            _ => $"Service: {Service} {Frontend} -> backend {Backend!.Value.EndpointName} {Backend.Value.Name} " +
                 $"({Algorithm} over {BackendCount} backends, client {ServiceLoader.Format(Client, ClientPort)})",
        };
    }

    public void WriteJson(Utf8JsonWriter w)
    {
        ArgumentNullException.ThrowIfNull(w);
        w.WriteStartObject("service");
        w.WriteString("result", Lookup switch
        {
            ServiceLookup.NotService => "NOT_A_SERVICE",
            ServiceLookup.NoBackends => "NO_SERVICE",
            _ => "TRANSLATED",
        });
        if (Service is not null)
        {
            w.WriteString("name", Service);
            w.WriteString("frontend", Frontend);
            w.WriteNumber("backends", BackendCount);
            w.WriteString("algorithm", Algorithm);
        }
        if (Backend is { } b)
        {
            w.WriteStartObject("backend");
            w.WriteString("endpoint", b.EndpointName);
            w.WriteString("address", b.Address.ToString());
            w.WriteNumber("port", b.Port);
            w.WriteNumber("identity", b.Identity);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }
}

public static class ServiceTracer
{
    /// <summary>Looks up <paramref name="vip"/>:<paramref name="port"/> for a client as the datapath would on a conntrack miss.</summary>
    public static ServiceTraceResult Trace(ServiceTable table, IpAddress client, ushort clientPort, IpAddress vip, ushort port, byte protocol)
    {
        ArgumentNullException.ThrowIfNull(table);
        var lb = new ServiceLoadBalancer(table, affinityCapacity: 64);
        var key = new FlowKey { Source = client, SourcePort = clientPort, Destination = vip, DestinationPort = port, Protocol = protocol };
        var result = lb.Select(in key, 0, out var sel);
        string algorithm = table.Options.Algorithm == BackendAlgorithm.Maglev ? $"Maglev M={table.MaglevSize}" : "random";
        if (result == ServiceLookup.NotService)
        {
            return new ServiceTraceResult(result, null, null, 0, null, algorithm, client, clientPort);
        }
        ref readonly var fe = ref table.Frontend(sel.FrontendId);
        string name = table.ServiceOf(in fe).QualifiedName;
        string frontend = ServiceListing.Frontend(in fe);
        return result == ServiceLookup.NoBackends
            ? new ServiceTraceResult(result, name, frontend, 0, null, algorithm, client, clientPort)
            : new ServiceTraceResult(result, name, frontend, fe.BackendCount, table.Backends[sel.BackendIndex], algorithm, client, clientPort);
    }
}
