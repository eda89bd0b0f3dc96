using System.Globalization;
using System.Text;
using System.Text.Json;
using Gateway.Datapath;

namespace Gateway.LoadBalancer;

/// <summary>
/// `gateway service list`: every service's frontends (VIP:port/protocol) and the backends they
/// translate to, as text or JSON, plus the sizes of the compiled maps (named as Cilium's
/// lb4_/lb6_ maps, split by family).
/// </summary>
public static class ServiceListing
{
    public static string ToText(ServiceTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        var sb = new StringBuilder();
        for (int f = 0; f < table.FrontendCount; f++)
        {
            ref readonly var fe = ref table.Frontend(f);
            var svc = table.ServiceOf(in fe);
            sb.Append(svc.QualifiedName).Append("  ").Append(Frontend(in fe)).Append(" -> ");
            if (fe.BackendCount == 0)
            {
                sb.Append("(no backends: new connections are dropped with NO_SERVICE)");
            }
            for (int i = 0; i < fe.BackendCount; i++)
            {
                var b = table.BackendOf(in fe, i);
                sb.Append(i == 0 ? "" : ", ").Append(b.Name).Append(" (").Append(b.EndpointName).Append(')');
            }
            if (fe.AffinityTimeoutNs != 0)
            {
                sb.Append("  [sessionAffinity ClientIP, ").Append(svc.AffinityTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)).Append(" s]");
            }
            sb.AppendLine();
        }
        foreach (var svc in table.Services.Where(s => s.ClusterIps.Count == 0))
        {
            sb.Append(svc.QualifiedName).AppendLine("  headless (clusterIP: None): no virtual IP, nothing to translate");
        }
        var (s4, s6, b4, b6) = Counts(table);
        sb.Append(CultureInfo.InvariantCulture,
            $"{table.Services.Count} services; lb4_services {s4}, lb6_services {s6}, lb4_backends {b4}, lb6_backends {b6}, ");
        sb.Append(table.Options.Algorithm == BackendAlgorithm.Maglev
            ? $"Maglev table size {table.MaglevSize}"
            : "random backend selection");
        sb.AppendLine();
        return sb.ToString();
    }

    public static string ToJson(ServiceTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("services");
            for (int si = 0; si < table.Services.Count; si++)
            {
                var svc = table.Services[si];
                w.WriteStartObject();
                w.WriteString("name", svc.Name);
                w.WriteString("namespace", svc.Namespace);
                w.WriteString("file", svc.File);
                w.WriteNumber("line", svc.Line);
                w.WriteString("session_affinity", svc.ClientIpAffinity ? "ClientIP" : "None");
                if (svc.ClientIpAffinity)
                {
                    w.WriteNumber("affinity_timeout_seconds", (long)svc.AffinityTimeout.TotalSeconds);
                }
                w.WriteStartArray("frontends");
                for (int f = 0; f < table.FrontendCount; f++)
                {
                    ref readonly var fe = ref table.Frontend(f);
                    if (fe.ServiceIndex != si)
                    {
                        continue;
                    }
                    var port = svc.Ports[fe.PortIndex];
                    w.WriteStartObject();
                    w.WriteString("address", fe.Address.ToString());
                    w.WriteNumber("port", fe.Port);
                    w.WriteString("protocol", port.ProtocolName);
                    if (port.Name is not null)
                    {
                        w.WriteString("port_name", port.Name);
                    }
                    w.WriteString("target_port", port.TargetPortName ?? port.TargetPort.ToString(CultureInfo.InvariantCulture));
                    w.WriteNumber("rev_nat_index", fe.RevNatIndex);
                    w.WriteStartArray("backends");
                    for (int i = 0; i < fe.BackendCount; i++)
                    {
                        var b = table.BackendOf(in fe, i);
                        w.WriteStartObject();
                        w.WriteString("address", b.Address.ToString());
                        w.WriteNumber("port", b.Port);
                        w.WriteString("endpoint", b.EndpointName);
                        w.WriteNumber("identity", b.Identity);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            var (s4, s6, b4, b6) = Counts(table);
            w.WriteStartObject("maps");
            w.WriteNumber("lb4_services", s4);
            w.WriteNumber("lb6_services", s6);
            w.WriteNumber("lb4_backends", b4);
            w.WriteNumber("lb6_backends", b6);
            w.WriteString("algorithm", table.Options.Algorithm == BackendAlgorithm.Maglev ? "maglev" : "random");
            w.WriteNumber("maglev_table_size", table.MaglevSize);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    internal static string Frontend(in ServiceFrontend fe) =>
        $"{ServiceLoader.Format(fe.Address, fe.Port)}/{(fe.Protocol == IpProtocol.Udp ? "UDP" : "TCP")}";

    private static (int S4, int S6, int B4, int B6) Counts(ServiceTable table)
    {
        int s4 = 0, s6 = 0, b4 = 0, b6 = 0;
        for (int f = 0; f < table.FrontendCount; f++)
        {
            if (table.Frontend(f).Address.IsV6) s6++; else s4++;
        }
        foreach (var b in table.Backends)
        {
            if (b.Address.IsV6) b6++; else b4++;
        }
        return (s4, s6, b4, b6);
    }
}
