using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Node.Replay;

/// <summary>
/// Writes the datagrams the two replay nodes exchange as an Ethernet/IPv4/UDP pcap between the
/// made-up underlay endpoints <see cref="ReplayPair.UnderlayA"/> and <see cref="ReplayPair.UnderlayB"/>
/// (RFC 5737 documentation addresses: the frames exist only in this file, nothing is sent).
/// Timestamps start at the clock's "now" and advance 1 us per frame so the order is kept.
/// </summary>
public sealed class UnderlayCaptureWriter : IUnderlaySink, IEspUnderlaySink, IDisposable
{
    private static readonly byte[] MacA = [0x02, 0x00, 0xc0, 0x00, 0x02, 0x01];
    private static readonly byte[] MacB = [0x02, 0x00, 0xc0, 0x00, 0x02, 0x02];
    private readonly CaptureFileWriter _writer;
    private readonly byte[] _frame = new byte[14 + 20 + 8 + 65535];
    private DateTime _time;
    private ushort _ipId;

    public UnderlayCaptureWriter(string path, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        _writer = new CaptureFileWriter(path, LinkType.Ethernet);
        _time = (clock ?? TimeProvider.System).GetUtcNow().UtcDateTime;
    }

    public long Frames { get; private set; }

    public void Datagram(bool fromA, ReadOnlySpan<byte> datagram)
    {
        if (datagram.Length > 65535 - 28) throw new ArgumentException("Datagram too large for IPv4.", nameof(datagram));
        var src = fromA ? ReplayPair.UnderlayA : ReplayPair.UnderlayB;
        var dst = fromA ? ReplayPair.UnderlayB : ReplayPair.UnderlayA;
        var f = _frame.AsSpan();
        (fromA ? MacB : MacA).CopyTo(f);
        (fromA ? MacA : MacB).CopyTo(f[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(f[12..], 0x0800);
        var ip = f.Slice(14, 20);
        ip[0] = 0x45;
        ip[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(28 + datagram.Length));
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], _ipId++);
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x4000); // DF
        ip[8] = 64;
        ip[9] = IpProtocol.Udp;
        ip[10] = ip[11] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], src.Address.V4);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], dst.Address.V4);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], HeaderChecksum(ip));
        var udp = f.Slice(34, 8);
        BinaryPrimitives.WriteUInt16BigEndian(udp, src.Port);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], dst.Port);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(8 + datagram.Length));
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], 0); // no checksum (allowed over IPv4)
        datagram.CopyTo(f[42..]);
        _writer.Write(f[..(42 + datagram.Length)], _time);
        _time = _time.AddTicks(10);
        Frames++;
    }

    /// <summary>Writes an ESP packet (IPsec replay) as Ethernet/IPv4 protocol 50 between the
    /// underlay addresses, the nodes' addresses in tunnel mode.</summary>
    public void EspPacket(bool fromA, ReadOnlySpan<byte> espPacket)
    {
        if (espPacket.Length > 65535 - Gateway.Tunnel.Esp.EspOuterHeader.Ipv4Length) throw new ArgumentException("ESP packet too large for IPv4.", nameof(espPacket));
        var f = _frame.AsSpan();
        (fromA ? MacB : MacA).CopyTo(f);
        (fromA ? MacA : MacB).CopyTo(f[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(f[12..], 0x0800);
        Gateway.Tunnel.Esp.EspOuterHeader.WriteIpv4(f.Slice(14, 20), fromA ? ReplayPair.UnderlayA.Address : ReplayPair.UnderlayB.Address,
            fromA ? ReplayPair.UnderlayB.Address : ReplayPair.UnderlayA.Address, espPacket.Length, _ipId++);
        espPacket.CopyTo(f[34..]);
        _writer.Write(f[..(34 + espPacket.Length)], _time);
        _time = _time.AddTicks(10);
        Frames++;
    }

    private static ushort HeaderChecksum(ReadOnlySpan<byte> header)
    {
        uint sum = 0;
        for (int i = 0; i < header.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(header[i..]);
        while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }

    public void Dispose() => _writer.Dispose();
}

/// <summary>
/// Writes a key log for Wireshark's WireGuard dissector (preference wg.keylog_file): lines
/// "NAME = base64(32 bytes)": both nodes' LOCAL_STATIC_PRIVATE_KEY, and a LOCAL_EPHEMERAL_PRIVATE_KEY
/// for each handshake whose ephemeral key the replay could recognise. Wireshark needs one side's
/// static and ephemeral private keys to derive the transport keys; with static keys alone it
/// decrypts the initiation's static-key and timestamp fields only. The current engine draws
/// ephemeral keys where the replay cannot see them (see EphemeralKeyRecorder).
/// </summary>
public static class WireGuardKeyLog
{
    public static void Write(string path, ReplayPair pair)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(pair);
        using var writer = CreatePrivateText(path);
        writer.WriteLine("# Gateway replay: static keys of both simulated nodes (192.0.2.1 = A, 192.0.2.2 = B)");
        writer.WriteLine($"LOCAL_STATIC_PRIVATE_KEY = {Convert.ToBase64String(pair.PrivateA)}");
        writer.WriteLine($"LOCAL_STATIC_PRIVATE_KEY = {Convert.ToBase64String(pair.PrivateB)}");
        foreach (var (_, key) in pair.EphemeralKeys)
        {
            writer.WriteLine($"LOCAL_EPHEMERAL_PRIVATE_KEY = {Convert.ToBase64String(key)}");
        }
    }

    /// <summary>Creates (or truncates) a text file readable by its owner only (0600), for key
    /// material: created with that mode, and set again in case the file already existed.</summary>
    internal static StreamWriter CreatePrivateText(string path)
    {
        var options = new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            UnixCreateMode = OperatingSystem.IsWindows() ? null : UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        var stream = new FileStream(path, options);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return new StreamWriter(stream) { NewLine = "\n" };
    }
}
