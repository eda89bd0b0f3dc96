using System.Text;
using System.Text.Json;
using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>One side of a trace: what the user named and what it resolved to.</summary>
public sealed record TracePeer(string Input, SecurityIdentity Identity, Endpoint? Endpoint, IpAddress? Address)
{
    /// <summary>True if this is a workload endpoint whose own policy applies.</summary>
    public bool IsWorkload => Endpoint is { IsWorkload: true };

    public string Describe()
    {
        string who = Endpoint is not null ? Endpoint.QualifiedName
            : Identity.Kind == IdentityKind.Cidr ? $"cidr {Identity.Cidr}"
            : ReservedIdentity.NameOf(Identity.Id) ?? Input;
        string addr = Address is { } a ? $" {a}" : "";
        // A CIDR identity carries a label per enclosing prefix; show only its own.
        var labels = Identity.Kind == IdentityKind.Cidr
            ? [$"cidr:{Identity.Cidr}", "reserved:world"]
            : Identity.Labels.Select(l => l.ToString());
        return $"{who}{addr} (identity {Identity.Id}) [{string.Join(", ", labels)}]";
    }
}

/// <summary>The result of tracing one packet through egress at the source and ingress at the destination.</summary>
public sealed record TraceResult(
    TracePeer From, TracePeer To, byte Protocol, ushort Port,
    Verdict Egress, Verdict Ingress, PolicySnapshot Snapshot)
{
    public bool Allowed => Egress.IsAllowed && Ingress.IsAllowed;

    public string ToText()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"From: {From.Describe()}");
        sb.AppendLine($"To:   {To.Describe()}");
        sb.AppendLine($"Port: {Port}/{PolicyText.ProtocolName(Protocol)}");
        sb.AppendLine($"Egress at source: {Explain(Egress, From, "egress")}");
        sb.AppendLine($"Ingress at destination: {Explain(Ingress, To, "ingress")}");
        sb.Append("Final verdict: ").AppendLine(Allowed ? "ALLOWED" : "DENIED");
        return sb.ToString();
    }

    private string Explain(Verdict v, TracePeer subject, string direction)
    {
        if (!subject.IsWorkload)
        {
            return $"ALLOWED (not a local endpoint, no {direction} policy applies)";
        }
        var rule = Snapshot.RuleOf(v);
        return v.Kind switch
        {
            VerdictKind.Unrestricted => $"ALLOWED (no {direction} policy selects {subject.Endpoint!.QualifiedName})",
            VerdictKind.Allowed => $"ALLOWED by {rule}",
            VerdictKind.Denied => $"DENIED by deny rule {rule}",
            _ => "DENIED by default deny",
        };
    }

    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            WritePeer(w, "from", From);
            WritePeer(w, "to", To);
            w.WriteString("protocol", PolicyText.ProtocolName(Protocol));
            w.WriteNumber("port", Port);
            WriteVerdict(w, "egress", Egress, From);
            WriteVerdict(w, "ingress", Ingress, To);
            w.WriteString("final_verdict", Allowed ? "ALLOWED" : "DENIED");
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WritePeer(Utf8JsonWriter w, string name, TracePeer p)
    {
        w.WriteStartObject(name);
        w.WriteString("input", p.Input);
        w.WriteNumber("identity", p.Identity.Id);
        if (p.Endpoint is not null)
        {
            w.WriteString("endpoint", p.Endpoint.QualifiedName);
        }
        if (p.Address is { } a)
        {
            w.WriteString("ip", a.ToString());
        }
        w.WriteStartArray("labels");
        foreach (var l in p.Identity.Labels)
        {
            w.WriteStringValue(l.ToString());
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private void WriteVerdict(Utf8JsonWriter w, string name, Verdict v, TracePeer subject)
    {
        w.WriteStartObject(name);
        w.WriteBoolean("applies", subject.IsWorkload);
        w.WriteString("verdict", v.IsAllowed ? "ALLOWED" : "DENIED");
        w.WriteString("reason", !subject.IsWorkload ? "not a local endpoint" : v.Kind switch
        {
            VerdictKind.Unrestricted => "no policy selects the endpoint in this direction",
            VerdictKind.Allowed => "allow rule",
            VerdictKind.Denied => "deny rule",
            _ => "default deny",
        });
        if (Snapshot.RuleOf(v) is { } r)
        {
            w.WriteStartObject("rule");
            w.WriteString("file", r.File);
            w.WriteNumber("document", r.Document);
            w.WriteString("kind", r.Kind.ToString());
            w.WriteString("policy", r.PolicyName);
            if (r.Namespace is not null)
            {
                w.WriteString("namespace", r.Namespace);
            }
            w.WriteString("path", r.Path);
            w.WriteNumber("index", r.RuleIndex);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }
}

/// <summary>
/// `gateway policy trace`: resolves SRC and DST (an endpoint name, a label list `k=v,k2=v2`, or an
/// IP address), compiles the policies, and looks the packet up in the source's egress map and
/// the destination's ingress map exactly as the datapath does.
/// </summary>
public static class PolicyTracer
{
    public static TraceResult Trace(PolicySet policies, EndpointTable endpoints, string from, string to, byte protocol, ushort port)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        // Label lists become endpoints without addresses before compiling, so policy gets
        // compiled for them and selectors can see them as peers.
        var fromRef = Prepare(endpoints, from, "trace-source");
        var toRef = Prepare(endpoints, to, "trace-destination");
        var snapshot = PolicyCompiler.Compile(policies, endpoints);
        var src = Resolve(snapshot, from, fromRef);
        var dst = Resolve(snapshot, to, toRef);
        var egress = src.IsWorkload ? snapshot.Lookup(src.Identity.Id, Direction.Egress, dst.Identity.Id, protocol, port) : Verdict.Unrestricted;
        var ingress = dst.IsWorkload ? snapshot.Lookup(dst.Identity.Id, Direction.Ingress, src.Identity.Id, protocol, port) : Verdict.Unrestricted;
        return new TraceResult(src, dst, protocol, port, egress, ingress, snapshot);
    }

    private static object Prepare(EndpointTable endpoints, string text, string syntheticName)
    {
        if (IpAddress.TryParse(text, out var ip))
        {
            return ip;
        }
        if (text.Contains('='))
        {
            var labels = new List<Label>();
            string? ns = null;
            foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!part.Contains('='))
                {
                    throw new ArgumentException($"'{part}' in '{text}' is not key=value");
                }
                var l = Label.Parse(part, LabelSources.K8s);
                if (l.Key.Length == 0)
                {
                    throw new ArgumentException($"'{part}' in '{text}' has an empty key");
                }
                if (l.Key == LabelSources.NamespaceKey)
                {
                    ns = l.Value;
                    continue;
                }
                if (l.Source == LabelSources.Reserved && !ReservedIdentity.TryGetId(l.Key, out _))
                {
                    throw new ArgumentException($"'{l.Key}' is not a reserved identity");
                }
                labels.Add(l);
            }
            string name = syntheticName;
            while (endpoints.FindByName($"{ns ?? "default"}/{name}") is not null)
            {
                name += "-";
            }
            return endpoints.Add(name, ns, [], labels);
        }
        return endpoints.FindByName(text) ?? throw new ArgumentException(
            $"'{text}' is not an endpoint name from the endpoints file, a label list (k=v,k2=v2) or an IP address");
    }

    private static TracePeer Resolve(PolicySnapshot snapshot, string input, object prepared)
    {
        switch (prepared)
        {
            case Endpoint ep:
                return new TracePeer(input, ep.Identity, ep, ep.Ips.Count > 0 ? ep.Ips[0] : null);
            default:
                var ip = (IpAddress)prepared;
                if (snapshot.Endpoints.TryGetByIp(ip, out var owner))
                {
                    return new TracePeer(input, owner.Identity, owner, ip);
                }
                uint id = snapshot.IpCache.Lookup(ip);
                snapshot.TryGetIdentity(id, out var identity);
                return new TracePeer(input, identity, null, ip);
        }
    }

    /// <summary>Parses "80/TCP", "53/udp", "8/ICMP" (type), "128/ICMPv6"; a bare number is TCP.</summary>
    public static bool TryParsePort(string text, out byte protocol, out ushort port, out string? error)
    {
        protocol = IpProtocol.Tcp;
        port = 0;
        error = null;
        int slash = text.IndexOf('/');
        string num = slash < 0 ? text : text[..slash];
        if (slash >= 0)
        {
            switch (text[(slash + 1)..].ToUpperInvariant())
            {
                case "TCP": protocol = IpProtocol.Tcp; break;
                case "UDP": protocol = IpProtocol.Udp; break;
                case "SCTP": protocol = IpProtocol.Sctp; break;
                case "ICMP": protocol = IpProtocol.Icmp; break;
                case "ICMPV6": protocol = IpProtocol.Icmpv6; break;
                default:
                    error = $"'{text[(slash + 1)..]}' is not TCP, UDP, SCTP, ICMP or ICMPv6";
                    return false;
            }
        }
        int max = protocol is IpProtocol.Icmp or IpProtocol.Icmpv6 ? 255 : 65535;
        if (!int.TryParse(num, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int p) || p > max)
        {
            error = $"'{num}' is not a port number (0-{max})";
            return false;
        }
        port = (ushort)p;
        return true;
    }
}
