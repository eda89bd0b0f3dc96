using System.Text;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Datapath.Audit;
using Gateway.Node.Configuration;
using Gateway.Node.Overlay;
using Gateway.Policy;
using Gateway.Tunnel;
using Gateway.Tunnel.Uapi;

namespace Gateway.Fuzz;

/// <summary>
/// One harness per parser that reads untrusted input. Each returns normally for any input the
/// code is meant to reject (documented error types included); anything else that escapes is a
/// crash for afl-fuzz. The inputs of <see cref="Run"/> are raw bytes from the fuzzer.
/// </summary>
public static class Targets
{
    public static readonly string[] Names = ["flow", "engine", "vxlan", "uapi", "wgquick", "yaml", "capture"];

    public static void Run(string target, ReadOnlySpan<byte> input)
    {
        switch (target)
        {
            case "flow": Flow(input); break;
            case "engine": Engine(input); break;
            case "vxlan": Vxlan(input); break;
            case "uapi": Uapi(input); break;
            case "wgquick": WgQuick(input); break;
            case "yaml": Yaml(input); break;
            case "capture": Capture(input); break;
            default: throw new ArgumentException($"unknown fuzz target '{target}' (one of {string.Join(", ", Names)})");
        }
    }

    private static readonly LinkType[] s_linkTypes = Enum.GetValues<LinkType>();

    /// <summary>The flow parser on every link type, and the audit classifier on the same frame.</summary>
    private static void Flow(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }
        LinkType link = s_linkTypes[input[0] % s_linkTypes.Length];
        ReadOnlySpan<byte> frame = input[1..];
        if (FlowParser.Parse(link, frame, out FlowKey key, out PacketLayout layout) == ParseStatus.Ok && layout.PayloadOffset >= 0)
        {
            // The layout must describe bytes that exist.
            _ = frame.Slice(layout.PayloadOffset, layout.PayloadLength);
            _ = key.ToString();
        }
        var auditor = new CaptureAuditor(link);
        auditor.Add(frame, DateTime.UnixEpoch);
        auditor.Add(frame, DateTime.UnixEpoch, frame.Length + (input[0] >> 4) * 100);
    }

    /// <summary>VXLAN and Geneve payloads and the overlay's own decapsulation check.</summary>
    private static void Vxlan(ReadOnlySpan<byte> input)
    {
        FlowParser.ParseVxlanPayload(input, out _, out _, out PacketLayout inner);
        if (inner.PayloadOffset >= 0)
        {
            _ = input.Slice(inner.PayloadOffset, inner.PayloadLength);
        }
        FlowParser.ParseGenevePayload(input, out _, out _, out _);
        if (VxlanFrame.TryRead(input, IpAddress.Parse("10.250.0.2"), 8472, out _, out _, out int offset, out int length, out _))
        {
            _ = input.Slice(offset, length);
        }
    }

    private static EngineWorld? s_world;

    /// <summary>
    /// A datagram from the network into an engine that has an established session. The first
    /// byte chooses a variant: as is, or with the header of a real transport message (type and
    /// the live receiver index) so the fuzzer reaches the keypair, replay and AEAD checks.
    /// </summary>
    private static void Engine(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }
        s_world ??= new EngineWorld();
        byte[] datagram = input[1..].ToArray();
        if ((input[0] & 1) != 0 && datagram.Length >= 8)
        {
            s_world.TransportHeader.AsSpan(0, 8).CopyTo(datagram);
        }
        var result = s_world.B.Decapsulate(s_world.EndpointA, datagram);
        if (result.Action == TunnelAction.DeliverToTun)
        {
            _ = datagram.AsSpan(result.Offset, result.Length);
        }
        s_world.Output.Sent.Clear();
    }

    /// <summary>A UAPI request (get or set) against a fresh engine.</summary>
    private static void Uapi(ReadOnlySpan<byte> input)
    {
        using var engine = new WireGuardEngine(new DiscardOutput());
        UapiProtocol.Handle(engine, Encoding.UTF8.GetString(input));
    }

    /// <summary>A wg-quick file; host names never resolve (no DNS from the fuzzer).</summary>
    private static void WgQuick(ReadOnlySpan<byte> input)
    {
        try
        {
            using var config = WgQuickConfig.Parse(Encoding.UTF8.GetString(input), "fuzz.conf", _ => []);
        }
        catch (ConfigException)
        {
        }
    }

    /// <summary>Policy YAML (first byte even) or an endpoints file (odd), then compiled together.</summary>
    private static void Yaml(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }
        string text = Encoding.UTF8.GetString(input[1..]);
        try
        {
            if ((input[0] & 1) == 0)
            {
                var documents = PolicyLoader.Parse(text, "fuzz.yaml");
                var set = new PolicySet(documents, ["fuzz.yaml"]);
                PolicyCompiler.Compile(set, EndpointFile.Parse("endpoints: []", "e.yaml", new IdentityAllocator()));
            }
            else
            {
                EndpointFile.Parse(text, "fuzz.yaml", new IdentityAllocator());
            }
        }
        catch (PolicyLoadException)
        {
        }
    }

    private static readonly string s_captureFile = Path.Combine(
        Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"gateway-fuzz-{Environment.ProcessId}.pcap");

    /// <summary>A pcap/pcapng file read through libpcap and audited.</summary>
    private static void Capture(ReadOnlySpan<byte> input)
    {
        File.WriteAllBytes(s_captureFile, input.ToArray());
        try
        {
            CaptureAuditor.AuditFile(s_captureFile);
        }
        catch (CaptureFileException)
        {
        }
    }

    private sealed class DiscardOutput : ITunnelOutput
    {
        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram)
        {
        }
    }

    private sealed class CollectingOutput : ITunnelOutput
    {
        public readonly List<byte[]> Sent = [];
        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram) => Sent.Add(datagram.ToArray());
    }

    /// <summary>Two engines with a completed handshake; B receives the fuzz input.</summary>
    private sealed class EngineWorld
    {
        public readonly CollectingOutput Output = new();
        public readonly WireGuardEngine B;
        public readonly IpEndpoint EndpointA = new(IpAddress.Parse("192.0.2.1"), 51820);
        public readonly byte[] TransportHeader = new byte[16];

        public EngineWorld()
        {
            var outputA = new CollectingOutput();
            var a = new WireGuardEngine(outputA);
            B = new WireGuardEngine(Output);
            byte[] keyA = new byte[32], keyB = new byte[32], pubA = new byte[32], pubB = new byte[32];
            X25519.GeneratePrivateKey(keyA);
            X25519.GeneratePrivateKey(keyB);
            X25519.DerivePublicKey(keyA, pubA);
            X25519.DerivePublicKey(keyB, pubB);
            a.SetPrivateKey(keyA);
            B.SetPrivateKey(keyB);
            Peer bOnA = a.GetOrAddPeer(new PublicKey(pubB));
            a.AddAllowedIp(bOnA, IpPrefix.Parse("10.0.0.2/32"));
            a.SetEndpoint(bOnA, new IpEndpoint(IpAddress.Parse("192.0.2.2"), 51820));
            Peer aOnB = B.GetOrAddPeer(new PublicKey(pubA));
            B.AddAllowedIp(aOnB, IpPrefix.Parse("10.0.0.1/32"));
            B.SetEndpoint(aOnB, EndpointA);

            a.InitiateHandshake(bOnA);
            var endpointB = new IpEndpoint(IpAddress.Parse("192.0.2.2"), 51820);
            for (int round = 0; round < 10 && (outputA.Sent.Count > 0 || Output.Sent.Count > 0); round++)
            {
                foreach (byte[] d in outputA.Sent.ToArray())
                {
                    B.Decapsulate(EndpointA, d);
                }
                outputA.Sent.Clear();
                foreach (byte[] d in Output.Sent.ToArray())
                {
                    a.Decapsulate(endpointB, d);
                }
                Output.Sent.Clear();
            }
            // A's first transport message confirms the session on B; keep its header.
            byte[] packet = new byte[28];
            packet[0] = 0x45;
            packet[3] = 28;
            packet[8] = 64;
            packet[9] = 1;
            IpAddress.Parse("10.0.0.1").WriteBytes(packet.AsSpan(12));
            IpAddress.Parse("10.0.0.2").WriteBytes(packet.AsSpan(16));
            byte[] sealedPacket = new byte[128];
            TunnelResult sent = a.Encapsulate(packet, sealedPacket);
            if (sent.Action == TunnelAction.SendToNetwork)
            {
                sealedPacket.AsSpan(sent.Offset, 16).CopyTo(TransportHeader);
                B.Decapsulate(EndpointA, sealedPacket.AsSpan(sent.Offset, sent.Length).ToArray());
            }
            Output.Sent.Clear();
            if (TransportHeader[0] != 4)
            {
                throw new InvalidOperationException("the fuzz world's handshake did not complete");
            }
        }
    }
}
