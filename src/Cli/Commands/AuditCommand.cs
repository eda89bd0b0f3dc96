using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Gateway.Datapath;
using Gateway.Datapath.Audit;

namespace Gateway.Cli.Commands;

/// <summary>
/// `gateway audit CAPTURE [--cluster-cidr CIDR]... [--tunnel-port N]... [--json]`: reads a pcap or
/// pcapng capture and says whether cluster traffic crossed the wire in plaintext.
/// Exit 0 = ENCRYPTED, 1 = LEAK, 2 = unreadable file or bad arguments.
/// </summary>
internal static class AuditCommand
{
    public const int EncryptedExitCode = 0;
    public const int LeakExitCode = 1;

    public static Command Create()
    {
        var capture = new Argument<string>("CAPTURE") { Description = "pcap or pcapng file (e.g. from tcpdump -w) to audit" };
        var clusterCidr = new Option<string[]>("--cluster-cidr")
        {
            Description = "Cluster address range (pod/node CIDR); repeatable. Default: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7",
            Arity = ArgumentArity.OneOrMore,
        };
        var tunnelPort = new Option<int[]>("--tunnel-port")
        {
            Description = "Extra UDP port carrying VXLAN (8472 and 4789 are always checked, Geneve on 6081); repeatable",
            Arity = ArgumentArity.OneOrMore,
        };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON document" };

        var command = new Command("audit", "Check a packet capture for cluster traffic that crossed the wire unencrypted");
        command.Arguments.Add(capture);
        command.Options.Add(clusterCidr);
        command.Options.Add(tunnelPort);
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            var options = new AuditOptions
            {
                ClusterPrefixes = ParsePrefixes(parse.GetValue(clusterCidr) ?? []),
                TunnelPorts = ParsePorts(parse.GetValue(tunnelPort) ?? []),
                MaxOffenders = 10,
            };
            string path = parse.GetValue(capture)!;
            AuditReport report;
            try
            {
                report = CaptureAuditor.AuditFile(path, options);
            }
            catch (CaptureFileException e)
            {
                throw new CliException(e.Message, CliRunner.UsageExitCode);
            }
            TextWriter output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json))
            {
                output.WriteLine(ToJson(path, report));
            }
            else
            {
                WriteText(output, path, report);
            }
            return report.IsLeak ? LeakExitCode : EncryptedExitCode;
        });
        return command;
    }

    private static List<IpPrefix> ParsePrefixes(string[] values)
    {
        var list = new List<IpPrefix>();
        foreach (string value in values)
        {
            if (!IpPrefix.TryParse(value, out IpPrefix prefix))
            {
                throw new CliException($"--cluster-cidr: '{value}' is not an IP prefix like 10.0.0.0/8 or fd00::/8", CliRunner.UsageExitCode);
            }
            list.Add(prefix);
        }
        return list;
    }

    private static List<ushort> ParsePorts(int[] values)
    {
        var list = new List<ushort>();
        foreach (int value in values)
        {
            if (value is < 1 or > 65535)
            {
                throw new CliException($"--tunnel-port: {value} is not a UDP port (1-65535)", CliRunner.UsageExitCode);
            }
            list.Add((ushort)value);
        }
        return list;
    }

    private static readonly (PacketClass Class, string Label)[] ClassLabels =
    [
        (PacketClass.WireGuard, "WireGuard"),
        (PacketClass.IpsecEsp, "IPsec ESP"),
        (PacketClass.PlaintextOverlay, "Plaintext overlay (VXLAN/Geneve)"),
        (PacketClass.PlaintextCluster, "Plaintext cluster traffic"),
        (PacketClass.Other, "Other"),
        (PacketClass.Unparsable, "Unparsable"),
    ];

    private static string Packets(long n) => n == 1 ? "1 packet" : $"{n} packets";

    private static string Time(DateTime t) => t.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    private static void WriteText(TextWriter w, string path, AuditReport r)
    {
        w.WriteLine($"Capture: {path} (link type {r.LinkType}, {Packets(r.TotalPackets)})");
        w.WriteLine($"Cluster ranges: {string.Join(", ", r.ClusterPrefixes)}; VXLAN ports: {string.Join(", ", r.VxlanPorts)}; Geneve port: {GeneveHeader.Port}");
        if (r.TruncatedBySnapLength > 0)
        {
            w.WriteLine($"Note: {r.TruncatedBySnapLength} packets were cut short by the capture's snap length; their headers were still classified.");
        }
        w.WriteLine();
        w.WriteLine($"{"Class",-34} {"Packets",10}");
        foreach (var (cls, label) in ClassLabels)
        {
            w.WriteLine($"{label,-34} {r.Counts[cls],10}");
        }
        foreach (var (reason, count) in r.UnparsableReasons.OrderBy(p => p.Key))
        {
            w.WriteLine($"  unparsable: {reason,-27} {count,10}");
        }

        if (r.WireGuardFlows.Count > 0)
        {
            w.WriteLine();
            w.WriteLine("WireGuard underlay flows:");
            foreach (WireGuardFlow f in r.WireGuardFlows)
            {
                w.WriteLine($"  {f.Describe()}: initiations {f.Initiations}, responses {f.Responses}, cookie replies {f.CookieReplies}, " +
                            $"transport {f.TransportMessages} ({f.TransportBytes} bytes, {f.ReceiverIndices} receiver indices, max counter {f.MaxCounter})");
            }
        }
        if (r.OverlayFlows.Count > 0)
        {
            w.WriteLine();
            w.WriteLine("Plaintext overlay flows:");
            foreach (OverlayFlow f in r.OverlayFlows)
            {
                w.WriteLine($"  {f.Protocol} {f.Source} -> {f.Destination} VNI {f.Vni}: {Packets(f.Packets)}, {f.ClusterPackets} carrying plaintext cluster traffic");
            }
        }

        w.WriteLine();
        if (r.IsLeak)
        {
            w.WriteLine($"Verdict: LEAK - {Packets(r.LeakPackets)} carried cluster traffic in plaintext.");
            w.WriteLine($"First offending packets:");
            foreach (Offender o in r.Offenders)
            {
                var line = new StringBuilder($"  #{o.Number} {Time(o.TimestampUtc)} {o.Kind}: outer {o.Outer}");
                if (o.Inner is FlowKey inner)
                {
                    line.Append($"; inner {inner}");
                }
                if (o.Vni is uint vni)
                {
                    line.Append($"; VNI {vni}");
                }
                w.WriteLine(line.ToString());
            }
        }
        else
        {
            w.WriteLine("Verdict: ENCRYPTED - no plaintext cluster traffic in this capture.");
        }
        if (r.LooksLikeTunnelInterface)
        {
            w.WriteLine();
            w.WriteLine("Hint: this capture has plaintext overlay traffic and no WireGuard at all. That is what a capture on the " +
                        "tunnel interface itself shows (packets before encryption). Capture on the underlay interface (the node's " +
                        "uplink, e.g. eth0) to verify encryption.");
        }
    }

    private static string ToJson(string path, AuditReport r)
    {
        using var stream = new MemoryStream();
        using (var j = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            j.WriteStartObject();
            j.WriteString("capture", path);
            j.WriteString("verdict", r.Verdict);
            j.WriteString("linkType", r.LinkType.ToString());
            j.WriteNumber("linkTypeValue", (int)r.LinkType);
            j.WriteNumber("packets", r.TotalPackets);
            j.WriteNumber("leakPackets", r.LeakPackets);
            j.WriteNumber("truncatedBySnapLength", r.TruncatedBySnapLength);
            j.WriteStartArray("clusterCidrs");
            foreach (IpPrefix p in r.ClusterPrefixes) j.WriteStringValue(p.ToString());
            j.WriteEndArray();
            j.WriteStartArray("vxlanPorts");
            foreach (ushort p in r.VxlanPorts) j.WriteNumberValue(p);
            j.WriteEndArray();
            j.WriteStartObject("counts");
            j.WriteNumber("wireguard", r.Counts[PacketClass.WireGuard]);
            j.WriteNumber("ipsecEsp", r.Counts[PacketClass.IpsecEsp]);
            j.WriteNumber("plaintextOverlay", r.Counts[PacketClass.PlaintextOverlay]);
            j.WriteNumber("plaintextCluster", r.Counts[PacketClass.PlaintextCluster]);
            j.WriteNumber("other", r.Counts[PacketClass.Other]);
            j.WriteNumber("unparsable", r.Counts[PacketClass.Unparsable]);
            j.WriteEndObject();
            j.WriteStartObject("unparsableReasons");
            foreach (var (reason, count) in r.UnparsableReasons.OrderBy(p => p.Key)) j.WriteNumber(reason.ToString(), count);
            j.WriteEndObject();
            j.WriteStartArray("wireguardFlows");
            foreach (WireGuardFlow f in r.WireGuardFlows)
            {
                j.WriteStartObject();
                j.WriteString("endpointA", WireGuardFlowEndpoint(f.EndpointA, f.PortA));
                j.WriteString("endpointB", WireGuardFlowEndpoint(f.EndpointB, f.PortB));
                j.WriteNumber("initiations", f.Initiations);
                j.WriteNumber("responses", f.Responses);
                j.WriteNumber("cookieReplies", f.CookieReplies);
                j.WriteNumber("transport", f.TransportMessages);
                j.WriteNumber("transportBytes", f.TransportBytes);
                j.WriteNumber("receiverIndices", f.ReceiverIndices);
                j.WriteNumber("maxCounter", f.MaxCounter);
                j.WriteEndObject();
            }
            j.WriteEndArray();
            j.WriteStartArray("overlayFlows");
            foreach (OverlayFlow f in r.OverlayFlows)
            {
                j.WriteStartObject();
                j.WriteString("protocol", f.Protocol);
                j.WriteString("source", f.Source.ToString());
                j.WriteString("destination", f.Destination.ToString());
                j.WriteNumber("vni", f.Vni);
                j.WriteNumber("packets", f.Packets);
                j.WriteNumber("clusterPackets", f.ClusterPackets);
                j.WriteEndObject();
            }
            j.WriteEndArray();
            j.WriteStartArray("offenders");
            foreach (Offender o in r.Offenders)
            {
                j.WriteStartObject();
                j.WriteNumber("number", o.Number);
                j.WriteString("time", Time(o.TimestampUtc));
                j.WriteString("kind", o.Kind);
                j.WritePropertyName("outer");
                WriteFlow(j, o.Outer);
                if (o.Inner is FlowKey inner)
                {
                    j.WritePropertyName("inner");
                    WriteFlow(j, inner);
                }
                else
                {
                    j.WriteNull("inner");
                }
                if (o.Vni is uint vni) j.WriteNumber("vni", vni); else j.WriteNull("vni");
                j.WriteEndObject();
            }
            j.WriteEndArray();
            j.WriteBoolean("tunnelInterfaceHint", r.LooksLikeTunnelInterface);
            if (r.LooksLikeTunnelInterface)
            {
                j.WriteString("hint", "plaintext overlay and no WireGuard: this is what the tunnel interface shows before encryption; capture on the underlay interface to verify encryption");
            }
            j.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string WireGuardFlowEndpoint(IpAddress a, ushort port) => a.IsV6 ? $"[{a}]:{port}" : $"{a}:{port}";

    private static void WriteFlow(Utf8JsonWriter j, FlowKey k)
    {
        j.WriteStartObject();
        j.WriteString("source", k.Source.ToString());
        j.WriteString("destination", k.Destination.ToString());
        j.WriteNumber("protocol", k.Protocol);
        if (k.Protocol is IpProtocol.Icmp or IpProtocol.Icmpv6)
        {
            j.WriteNumber("icmpType", k.IcmpType);
            j.WriteNumber("icmpCode", k.IcmpCode);
            j.WriteNumber("icmpId", k.IcmpId);
        }
        else
        {
            j.WriteNumber("sourcePort", k.SourcePort);
            j.WriteNumber("destinationPort", k.DestinationPort);
        }
        j.WriteString("fragment", k.Fragment.ToString());
        j.WriteEndObject();
    }
}
