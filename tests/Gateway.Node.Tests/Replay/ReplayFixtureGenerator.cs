using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Node.Tests.Replay;

/// <summary>
/// Generator of fixtures/replay/*.pcap (Ethernet, deterministic). The files are checked in;
/// <see cref="ReplayFixtureTests"/> regenerates them into a temporary directory and requires byte
/// equality; to rewrite the checked-in copies:
///   GATEWAY_WRITE_FIXTURES=1 dotnet test tests/Gateway.Node.Tests -c Release --filter ReplayFixture
/// Addresses match fixtures/replay/endpoints.yaml; fixtures/replay/policy.yaml is the demo's policy
/// (frontend may reach backend on TCP 80 and ping it; backend accepts only frontend; db only backend).
/// </summary>
public static class ReplayFixtureGenerator
{
    public const string Imix = "imix.pcap";
    public const string Tcp1420 = "tcp-1420.pcap";
    public static readonly string[] FileNames = [Imix, Tcp1420];

    public static readonly uint[] Frontends = [V4(10, 11, 1, 10), V4(10, 11, 1, 11), V4(10, 11, 1, 12), V4(10, 11, 1, 13)];
    public static readonly uint Intruder = V4(10, 11, 1, 20);
    public static readonly uint[] Backends = [V4(10, 11, 2, 10), V4(10, 11, 2, 11)];
    public static readonly uint Db = V4(10, 11, 2, 20);

    /// <summary>What one pass over a fixture must produce under the demo policy.</summary>
    public sealed record Expected(int Packets, int Allowed, int EgressDenied, int IngressDenied, int Flows);

    private static readonly DateTime Start = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    public static Dictionary<string, Expected> WriteAll(string directory)
    {
        Directory.CreateDirectory(directory);
        return new Dictionary<string, Expected>
        {
            [Imix] = Write(Path.Combine(directory, Imix), ImixTraffic()),
            [Tcp1420] = Write(Path.Combine(directory, Tcp1420), BulkTraffic()),
        };
    }

    private enum Fate { Allowed, EgressDenied, IngressDenied }

    private static Expected Write(string path, IEnumerable<(byte[] Ip, Fate Fate)> packets)
    {
        int total = 0, allowed = 0, egress = 0, ingress = 0;
        var flows = new HashSet<(uint, uint, byte, ushort, ushort)>();
        using var writer = new CaptureFileWriter(path, LinkType.Ethernet);
        foreach (var (ip, fate) in packets)
        {
            writer.Write(Ethernet(ip), Start.AddMicroseconds(total * 37));
            total++;
            switch (fate)
            {
                case Fate.Allowed: allowed++; break;
                case Fate.EgressDenied: egress++; break;
                default: ingress++; break;
            }
            uint s = BinaryPrimitives.ReadUInt32BigEndian(ip.AsSpan(12)), d = BinaryPrimitives.ReadUInt32BigEndian(ip.AsSpan(16));
            ushort sp = ip[9] == 1 ? BinaryPrimitives.ReadUInt16BigEndian(ip.AsSpan(24)) : BinaryPrimitives.ReadUInt16BigEndian(ip.AsSpan(20));
            ushort dp = ip[9] == 1 ? sp : BinaryPrimitives.ReadUInt16BigEndian(ip.AsSpan(22));
            if (!flows.Contains((d, s, ip[9], dp, sp))) flows.Add((s, d, ip[9], sp, dp));
        }
        return new Expected(total, allowed, egress, ingress, flows.Count);
    }

    /// <summary>
    /// Many short TCP connections frontend -> backend:80 (handshake, request/response segments with
    /// IP sizes drawn 7:4:1 from 64/576/1500, FIN teardown, some ending in RST), pings frontend ->
    /// backend, and traffic the demo policy denies: frontend -> db:5432 and frontend UDP to backend
    /// (frontend's egress policy), intruder -> backend:80 (backend's ingress policy), each a client
    /// retrying its SYN or datagram with no answer, as a capture would show it.
    /// </summary>
    private static IEnumerable<(byte[], Fate)> ImixTraffic()
    {
        var random = new Random(8);
        var sizes = new[] { 64, 64, 64, 64, 64, 64, 64, 576, 576, 576, 576, 1500 };
        ushort clientPort = 40000;
        ushort ipId = 1;
        for (int round = 0; round < 6; round++)
        {
            foreach (uint client in Frontends)
            {
                uint server = Backends[(round + (int)(client & 1)) % Backends.Length];
                ushort port = clientPort++;
                uint cseq = (uint)random.Next(), sseq = (uint)random.Next();
                yield return (Tcp(client, server, port, 80, cseq, 0, Syn, 0, ipId++), Fate.Allowed);
                yield return (Tcp(server, client, 80, port, sseq, cseq + 1, Syn | Ack, 0, ipId++), Fate.Allowed);
                cseq++; sseq++;
                yield return (Tcp(client, server, port, 80, cseq, sseq, Ack, 0, ipId++), Fate.Allowed);
                int exchanges = 3 + random.Next(6);
                for (int e = 0; e < exchanges; e++)
                {
                    int up = sizes[random.Next(sizes.Length)] - 40, down = sizes[random.Next(sizes.Length)] - 40;
                    yield return (Tcp(client, server, port, 80, cseq, sseq, Ack | Psh, up, ipId++), Fate.Allowed);
                    cseq += (uint)up;
                    yield return (Tcp(server, client, 80, port, sseq, cseq, Ack | Psh, down, ipId++), Fate.Allowed);
                    sseq += (uint)down;
                }
                if (random.Next(5) == 0)
                {
                    yield return (Tcp(client, server, port, 80, cseq, sseq, Rst | Ack, 0, ipId++), Fate.Allowed);
                    continue;
                }
                yield return (Tcp(client, server, port, 80, cseq, sseq, Fin | Ack, 0, ipId++), Fate.Allowed);
                yield return (Tcp(server, client, 80, port, sseq, cseq + 1, Fin | Ack, 0, ipId++), Fate.Allowed);
                yield return (Tcp(client, server, port, 80, cseq + 1, sseq + 1, Ack, 0, ipId++), Fate.Allowed);
            }
            // A ping per round: echo request and reply (frontend egress and backend ingress allow type 8).
            uint pinger = Frontends[round % Frontends.Length], target = Backends[round % Backends.Length];
            yield return (Icmp(pinger, target, 8, (ushort)(100 + round), 1, 56, ipId++), Fate.Allowed);
            yield return (Icmp(target, pinger, 0, (ushort)(100 + round), 1, 56, ipId++), Fate.Allowed);
            // Denied: frontend -> db:5432 (three SYN tries), intruder -> backend:80, frontend UDP -> backend:53.
            ushort dbPort = clientPort++, intruderPort = clientPort++, udpPort = clientPort++;
            uint seq = (uint)random.Next();
            for (int attempt = 0; attempt < 3; attempt++)
            {
                yield return (Tcp(Frontends[round % Frontends.Length], Db, dbPort, 5432, seq, 0, Syn, 0, ipId++), Fate.EgressDenied);
                yield return (Tcp(Intruder, Backends[0], intruderPort, 80, seq + 7, 0, Syn, 0, ipId++), Fate.IngressDenied);
            }
            yield return (Udp(Frontends[round % Frontends.Length], Backends[1], udpPort, 53, 40, ipId++), Fate.EgressDenied);
        }
    }

    /// <summary>One TCP connection frontend -> backend:80 moving data both ways in 1420-byte IP
    /// packets (the WireGuard MTU), with its handshake and teardown (7 small packets).</summary>
    private static IEnumerable<(byte[], Fate)> BulkTraffic()
    {
        uint client = Frontends[0], server = Backends[0];
        const ushort port = 45000;
        uint cseq = 1000, sseq = 9000;
        ushort ipId = 1;
        yield return (Tcp(client, server, port, 80, cseq, 0, Syn, 0, ipId++), Fate.Allowed);
        yield return (Tcp(server, client, 80, port, sseq, cseq + 1, Syn | Ack, 0, ipId++), Fate.Allowed);
        cseq++; sseq++;
        yield return (Tcp(client, server, port, 80, cseq, sseq, Ack, 0, ipId++), Fate.Allowed);
        const int payload = 1420 - 40;
        for (int i = 0; i < 256; i++)
        {
            yield return (Tcp(client, server, port, 80, cseq, sseq, Ack | Psh, payload, ipId++), Fate.Allowed);
            cseq += payload;
            yield return (Tcp(server, client, 80, port, sseq, cseq, Ack | Psh, payload, ipId++), Fate.Allowed);
            sseq += payload;
        }
        yield return (Tcp(client, server, port, 80, cseq, sseq, Fin | Ack, 0, ipId++), Fate.Allowed);
        yield return (Tcp(server, client, 80, port, sseq, cseq + 1, Fin | Ack, 0, ipId++), Fate.Allowed);
        yield return (Tcp(client, server, port, 80, cseq + 1, sseq + 1, Ack, 0, ipId++), Fate.Allowed);
    }

    private const byte Fin = 1, Syn = 2, Rst = 4, Psh = 8, Ack = 16;

    public static uint V4(byte a, byte b, byte c, byte d) => (uint)(a << 24 | b << 16 | c << 8 | d);

    private static byte[] Ipv4(uint src, uint dst, byte protocol, int l4Length, ushort id)
    {
        var p = new byte[20 + l4Length];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(6), 0x4000);
        p[8] = 64;
        p[9] = protocol;
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(12), src);
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(16), dst);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), Checksum(p.AsSpan(0, 20), 0));
        return p;
    }

    private static void Payload(Span<byte> payload, uint seed)
    {
        for (int i = 0; i < payload.Length; i++) payload[i] = (byte)(seed * 31 + (uint)i * 7);
    }

    private static byte[] Tcp(uint src, uint dst, ushort sport, ushort dport, uint seq, uint ack, byte flags, int payload, ushort id)
    {
        var p = Ipv4(src, dst, IpProtocol.Tcp, 20 + payload, id);
        var t = p.AsSpan(20);
        BinaryPrimitives.WriteUInt16BigEndian(t, sport);
        BinaryPrimitives.WriteUInt16BigEndian(t[2..], dport);
        BinaryPrimitives.WriteUInt32BigEndian(t[4..], seq);
        BinaryPrimitives.WriteUInt32BigEndian(t[8..], ack);
        t[12] = 5 << 4;
        t[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(t[14..], 64240);
        Payload(t[20..], seq);
        BinaryPrimitives.WriteUInt16BigEndian(t[16..], Checksum(t, PseudoHeader(src, dst, IpProtocol.Tcp, t.Length)));
        return p;
    }

    private static byte[] Udp(uint src, uint dst, ushort sport, ushort dport, int payload, ushort id)
    {
        var p = Ipv4(src, dst, IpProtocol.Udp, 8 + payload, id);
        var u = p.AsSpan(20);
        BinaryPrimitives.WriteUInt16BigEndian(u, sport);
        BinaryPrimitives.WriteUInt16BigEndian(u[2..], dport);
        BinaryPrimitives.WriteUInt16BigEndian(u[4..], (ushort)u.Length);
        Payload(u[8..], sport);
        ushort sum = Checksum(u, PseudoHeader(src, dst, IpProtocol.Udp, u.Length));
        BinaryPrimitives.WriteUInt16BigEndian(u[6..], sum == 0 ? (ushort)0xffff : sum);
        return p;
    }

    private static byte[] Icmp(uint src, uint dst, byte type, ushort identifier, ushort sequence, int payload, ushort id)
    {
        var p = Ipv4(src, dst, IpProtocol.Icmp, 8 + payload, id);
        var i = p.AsSpan(20);
        i[0] = type;
        BinaryPrimitives.WriteUInt16BigEndian(i[4..], identifier);
        BinaryPrimitives.WriteUInt16BigEndian(i[6..], sequence);
        Payload(i[8..], identifier);
        BinaryPrimitives.WriteUInt16BigEndian(i[2..], Checksum(i, 0));
        return p;
    }

    private static uint PseudoHeader(uint src, uint dst, byte protocol, int length) =>
        (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + protocol + (uint)length;

    private static ushort Checksum(ReadOnlySpan<byte> data, uint sum)
    {
        int i = 0;
        for (; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if (i < data.Length) sum += (uint)data[i] << 8;
        while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }

    private static byte[] Ethernet(byte[] ip)
    {
        var frame = new byte[14 + ip.Length];
        // Client side MAC 02:00:0a:0b:01:01, server side 02:00:0a:0b:02:01 (locally administered).
        byte[] a = [0x02, 0x00, 0x0a, 0x0b, 0x01, 0x01], b = [0x02, 0x00, 0x0a, 0x0b, 0x02, 0x01];
        bool fromClientSide = ip[14] == 1;
        (fromClientSide ? b : a).CopyTo(frame, 0);
        (fromClientSide ? a : b).CopyTo(frame, 6);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x0800);
        ip.CopyTo(frame, 14);
        return frame;
    }

    /// <summary>The endpoints file matching the captures (the demo's label scheme).</summary>
    public const string EndpointsYaml = """
        # Endpoints of fixtures/replay/*.pcap: identities come from the labels.
        endpoints:
          - {name: frontend-0, namespace: default, ips: [10.11.1.10], labels: {app: frontend}}
          - {name: frontend-1, namespace: default, ips: [10.11.1.11], labels: {app: frontend}}
          - {name: frontend-2, namespace: default, ips: [10.11.1.12], labels: {app: frontend}}
          - {name: frontend-3, namespace: default, ips: [10.11.1.13], labels: {app: frontend}}
          - {name: intruder, namespace: default, ips: [10.11.1.20], labels: {app: intruder}}
          - {name: backend-0, namespace: default, ips: [10.11.2.10], labels: {app: backend}}
          - {name: backend-1, namespace: default, ips: [10.11.2.11], labels: {app: backend}}
          - {name: db, namespace: default, ips: [10.11.2.20], labels: {app: db}}

        """;
}
