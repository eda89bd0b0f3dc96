using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Gateway.Datapath.Offload;

/// <summary>GSO kinds of a <see cref="VirtioNetHeader"/> (include/uapi/linux/virtio_net.h).</summary>
public enum GsoType : byte
{
    None = 0,
    TcpV4 = 1,
    Udp = 3,
    TcpV6 = 4,
    UdpL4 = 5,
}

/// <summary>
/// struct virtio_net_hdr, the 10 bytes in front of every packet on a TUN device opened with
/// IFF_VNET_HDR (little-endian, the kernel's default for TUN). With offloads enabled a read can
/// return a TCP "super-packet" up to 64 KiB that must be cut into MSS-sized segments
/// (<see cref="GsoType"/> TcpV4/TcpV6, <see cref="GsoSize"/> = MSS), or a packet whose transport
/// checksum is only partly computed (<see cref="NeedsChecksum"/>: the field at
/// <see cref="ChecksumStart"/> + <see cref="ChecksumOffset"/> holds the pseudo-header sum and the
/// rest is left to whoever sends it).
/// </summary>
[StructLayout(LayoutKind.Auto)]
public readonly struct VirtioNetHeader
{
    public const int Size = 10;
    public const byte FlagNeedsChecksum = 1;
    public const byte GsoEcn = 0x80;

    public VirtioNetHeader(byte flags, GsoType gsoType, bool ecn, ushort headerLength, ushort gsoSize, ushort checksumStart, ushort checksumOffset)
    {
        Flags = flags;
        Gso = gsoType;
        Ecn = ecn;
        HeaderLength = headerLength;
        GsoSize = gsoSize;
        ChecksumStart = checksumStart;
        ChecksumOffset = checksumOffset;
    }

    public byte Flags { get; }
    public GsoType Gso { get; }
    /// <summary>The ECN bit of gso_type: the sender set CWR on the super-packet.</summary>
    public bool Ecn { get; }
    public ushort HeaderLength { get; }
    public ushort GsoSize { get; }
    public ushort ChecksumStart { get; }
    public ushort ChecksumOffset { get; }

    public bool NeedsChecksum => (Flags & FlagNeedsChecksum) != 0;

    public static VirtioNetHeader Read(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < Size)
        {
            throw new ArgumentException("A virtio_net_hdr is 10 bytes.", nameof(bytes));
        }
        return new VirtioNetHeader(bytes[0], (GsoType)(bytes[1] & ~GsoEcn), (bytes[1] & GsoEcn) != 0,
            BinaryPrimitives.ReadUInt16LittleEndian(bytes[2..]), BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(bytes[6..]), BinaryPrimitives.ReadUInt16LittleEndian(bytes[8..]));
    }

    public void Write(Span<byte> bytes)
    {
        bytes[0] = Flags;
        bytes[1] = (byte)((byte)Gso | (Ecn ? GsoEcn : 0));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[2..], HeaderLength);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[6..], ChecksumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[8..], ChecksumOffset);
    }
}
