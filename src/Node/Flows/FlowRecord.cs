using System.Globalization;
using System.Text.Json;

namespace Gateway.Node.Flows;

/// <summary>One side of a flow as the log names it.</summary>
public sealed record FlowPeer(uint Identity, IReadOnlyList<string> Labels, string? Namespace, string? PodName);

/// <summary>
/// One line of the flow log read back (by <c>gateway observe</c>): the fields the filters and the
/// compact output need, plus the line itself for <c>--json</c>. Parsing never throws; a line that
/// is not a flow object is refused.
/// </summary>
public sealed class FlowRecord
{
    private static readonly FlowPeer NoPeer = new(0, [], null, null);

    private FlowRecord(string raw) => Raw = raw;

    /// <summary>The line exactly as read (without its newline).</summary>
    public string Raw { get; }
    /// <summary>The time text as logged (RFC 3339, nanoseconds).</summary>
    public string TimeText { get; private set; } = "";
    /// <summary>The time, to the 100 ns tick (the text keeps all digits).</summary>
    public DateTime Time { get; private set; }
    public string Verdict { get; private set; } = "";
    public string? DropReasonDesc { get; private set; }
    public string? SourceIp { get; private set; }
    public string? DestinationIp { get; private set; }
    public bool Encrypted { get; private set; }
    /// <summary>"TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6" or null.</summary>
    public string? L4Protocol { get; private set; }
    public int SourcePort { get; private set; }
    public int DestinationPort { get; private set; }
    public IReadOnlyList<string> TcpFlags { get; private set; } = [];
    public int IcmpType { get; private set; }
    public int IcmpCode { get; private set; }
    public FlowPeer Source { get; private set; } = NoPeer;
    public FlowPeer Destination { get; private set; } = NoPeer;
    public string? TrafficDirection { get; private set; }
    public bool IsReply { get; private set; }
    public string? NodeName { get; private set; }
    /// <summary>The deciding policy as namespace/name (from *_allowed_by / *_denied_by), if logged.</summary>
    public string? PolicyName { get; private set; }
    /// <summary>Hubble's destination_service as namespace/name: the ClusterIP service the flow was sent to
    /// (the destination is then the backend chosen for it).</summary>
    public string? DestinationService { get; private set; }

    /// <summary>Parses one flow line; false for anything else (bad JSON, no time or verdict, the socket's hello line).</summary>
    public static bool TryParse(string line, out FlowRecord record)
    {
        record = null!;
        if (string.IsNullOrWhiteSpace(line))
        {
            return false;
        }
        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object ||
                !TryString(root, "time", out var timeText) || !TryParseTime(timeText, out var time) ||
                !TryString(root, "verdict", out var verdict))
            {
                return false;
            }
            var r = new FlowRecord(line) { TimeText = timeText, Time = time, Verdict = verdict };
            r.DropReasonDesc = TryString(root, "drop_reason_desc", out var d) ? d : null;
            if (root.TryGetProperty("IP", out var ip) && ip.ValueKind == JsonValueKind.Object)
            {
                r.SourceIp = TryString(ip, "source", out var s) ? s : null;
                r.DestinationIp = TryString(ip, "destination", out var t) ? t : null;
                r.Encrypted = ip.TryGetProperty("encrypted", out var enc) && enc.ValueKind == JsonValueKind.True;
            }
            if (root.TryGetProperty("l4", out var l4) && l4.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in l4.EnumerateObject())
                {
                    if (p.Value.ValueKind != JsonValueKind.Object)
                    {
                        continue;
                    }
                    r.L4Protocol = p.Name;
                    r.SourcePort = Int(p.Value, "source_port");
                    r.DestinationPort = Int(p.Value, "destination_port");
                    r.IcmpType = Int(p.Value, "type");
                    r.IcmpCode = Int(p.Value, "code");
                    if (p.Value.TryGetProperty("flags", out var flags) && flags.ValueKind == JsonValueKind.Object)
                    {
                        r.TcpFlags = flags.EnumerateObject().Where(f => f.Value.ValueKind == JsonValueKind.True).Select(f => f.Name).ToArray();
                    }
                    break;
                }
            }
            r.Source = Peer(root, "source");
            r.Destination = Peer(root, "destination");
            r.TrafficDirection = TryString(root, "traffic_direction", out var dir) ? dir : null;
            r.IsReply = root.TryGetProperty("is_reply", out var reply) && reply.ValueKind == JsonValueKind.True;
            r.NodeName = TryString(root, "node_name", out var node) ? node : null;
            if (root.TryGetProperty("destination_service", out var svc) && svc.ValueKind == JsonValueKind.Object && TryString(svc, "name", out var svcName))
            {
                r.DestinationService = TryString(svc, "namespace", out var svcNs) ? svcNs + "/" + svcName : svcName;
            }
            foreach (var field in (ReadOnlySpan<string>)["ingress_allowed_by", "egress_allowed_by", "ingress_denied_by", "egress_denied_by"])
            {
                if (root.TryGetProperty(field, out var by) && by.ValueKind == JsonValueKind.Array && by.GetArrayLength() > 0 &&
                    by[0].ValueKind == JsonValueKind.Object && TryString(by[0], "name", out var name))
                {
                    r.PolicyName = TryString(by[0], "namespace", out var ns) ? ns + "/" + name : name;
                    break;
                }
            }
            record = r;
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>Parses <c>2026-11-28T13:00:00.123456789Z</c> (any number of fraction digits, UTC).</summary>
    public static bool TryParseTime(string text, out DateTime time)
    {
        time = default;
        if (text.Length < 20 || text[^1] != 'Z')
        {
            return false;
        }
        if (!DateTime.TryParseExact(text.AsSpan(0, 19), "yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture,
                DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var seconds))
        {
            return false;
        }
        var rest = text.AsSpan(19, text.Length - 20);
        long ticks = 0;
        if (rest.Length > 0)
        {
            // .NET parses at most 7 fraction digits; Hubble writes 9, so read them by hand.
            if (rest[0] != '.' || rest.Length == 1)
            {
                return false;
            }
            var digits = rest[1..];
            long scale = TimeSpan.TicksPerSecond;
            foreach (char c in digits)
            {
                if (c is < '0' or > '9')
                {
                    return false;
                }
                scale /= 10;
                ticks += (c - '0') * scale;
            }
        }
        time = DateTime.SpecifyKind(seconds.AddTicks(ticks), DateTimeKind.Utc);
        return true;
    }

    private static FlowPeer Peer(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var p) || p.ValueKind != JsonValueKind.Object)
        {
            return NoPeer;
        }
        uint identity = p.TryGetProperty("identity", out var id) && id.ValueKind == JsonValueKind.Number && id.TryGetUInt32(out var v) ? v : 0;
        string[] labels = p.TryGetProperty("labels", out var l) && l.ValueKind == JsonValueKind.Array
            ? l.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!).ToArray()
            : [];
        return new FlowPeer(identity, labels,
            TryString(p, "namespace", out var ns) ? ns : null,
            TryString(p, "pod_name", out var pod) ? pod : null);
    }

    private static bool TryString(JsonElement e, string name, out string value)
    {
        if (e.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.String)
        {
            value = p.GetString()!;
            return true;
        }
        value = "";
        return false;
    }

    private static int Int(JsonElement e, string name) =>
        e.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.Number && p.TryGetInt32(out int v) ? v : 0;
}
