using PacketDotNet;
using SharpPcap;
using SharpPcap.LibPcap;

namespace Gateway.Datapath;

/// <summary>A capture file could not be opened or read (missing, not pcap/pcapng, corrupt).</summary>
public sealed class CaptureFileException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>One packet from a capture file. <see cref="Data"/> is valid until the next read.</summary>
public readonly ref struct CapturedPacket
{
    public CapturedPacket(ReadOnlySpan<byte> data, DateTime timestampUtc, int originalLength)
    {
        Data = data;
        TimestampUtc = timestampUtc;
        OriginalLength = originalLength;
    }

    /// <summary>The captured bytes (maybe fewer than were on the wire, see <see cref="OriginalLength"/>).</summary>
    public ReadOnlySpan<byte> Data { get; }
    public DateTime TimestampUtc { get; }
    /// <summary>Length of the packet on the wire; larger than Data.Length when the snap length cut it.</summary>
    public int OriginalLength { get; }
    public bool IsTruncated => OriginalLength > Data.Length;
}

/// <summary>
/// Reads pcap and pcapng files through SharpPcap/libpcap, keeping the file's link type.
/// This is an I/O edge, not the datapath: SharpPcap allocates per packet; callers parse the
/// returned span with the datapath's own readers.
/// </summary>
public sealed class CaptureFileReader : IDisposable
{
    private readonly CaptureFileReaderDevice _device;
    private bool _disposed;

    private CaptureFileReader(CaptureFileReaderDevice device, LinkType linkType)
    {
        _device = device;
        LinkType = linkType;
    }

    /// <summary>The file's link type (pcap LINKTYPE_ value; any value is kept, known or not).</summary>
    public LinkType LinkType { get; }

    /// <summary>Opens a capture file. Throws <see cref="CaptureFileException"/> with one clear line
    /// when it is missing or not a readable pcap/pcapng file.</summary>
    public static CaptureFileReader Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new CaptureFileException($"capture file '{path}' does not exist");
        }
        CaptureFileReaderDevice? device = null;
        try
        {
            device = new CaptureFileReaderDevice(path);
            device.Open();
            var reader = new CaptureFileReader(device, FromDlt((int)device.LinkType));
            device = null;
            return reader;
        }
        catch (Exception e) when (e is PcapException or DllNotFoundException or InvalidOperationException or IOException)
        {
            string detail = e is DllNotFoundException ? "libpcap is not installed" : e.Message.Trim();
            throw new CaptureFileException($"cannot read capture file '{path}': {detail}", e);
        }
        finally
        {
            device?.Dispose();
        }
    }

    // libpcap reports the platform's DLT_ value, not the file's LINKTYPE_ value: a LINKTYPE_RAW
    // (101) file reads as DLT_RAW, which is 12 on Linux and 14 on OpenBSD. Both mean raw IP.
    private static LinkType FromDlt(int dlt) => dlt is 12 or 14 ? LinkType.Raw : (LinkType)(ushort)dlt;

    /// <summary>Reads the next packet; false at the end of the file. Throws
    /// <see cref="CaptureFileException"/> if the file is corrupt mid-way.</summary>
    public bool TryReadNext(out CapturedPacket packet)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        GetPacketStatus status = _device.GetNextPacket(out PacketCapture capture);
        if (status == GetPacketStatus.PacketRead)
        {
            int original = capture.Data.Length;
            if (capture.Header is PcapHeader header)
            {
                original = (int)Math.Max(header.PacketLength, (uint)capture.Data.Length);
            }
            packet = new CapturedPacket(capture.Data, ToUtc(capture.Header.Timeval), original);
            return true;
        }
        packet = default;
        if (status == GetPacketStatus.Error)
        {
            throw new CaptureFileException("capture file is corrupt or truncated");
        }
        return false;
    }

    /// <summary>
    /// The record's time, clamped to what DateTime can hold. A corrupt record may claim any
    /// seconds and fraction (SharpPcap's own conversion then throws OverflowException, found by
    /// fuzzing); timestamps are only reported, so a wild one must not stop the read.
    /// </summary>
    private static DateTime ToUtc(PosixTimeval timeval)
    {
        const decimal maxSeconds = 253402300799m; // 9999-12-31T23:59:59Z
        decimal seconds = timeval.Value;
        if (seconds >= maxSeconds)
        {
            return DateTime.SpecifyKind(DateTime.MaxValue, DateTimeKind.Utc);
        }
        return DateTime.UnixEpoch.AddTicks((long)(seconds * TimeSpan.TicksPerSecond));
    }

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _device.Dispose();
        }
    }
}

/// <summary>Writes pcap files (microsecond timestamps) with a chosen link type, through SharpPcap.</summary>
public sealed class CaptureFileWriter : IDisposable
{
    private readonly CaptureFileWriterDevice _device;
    private bool _disposed;

    public CaptureFileWriter(string path, LinkType linkType, int snapLength = 262144)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(snapLength, 64);
        LinkType = linkType;
        try
        {
            _device = new CaptureFileWriterDevice(path, FileMode.Create);
            // libpcap takes a DLT_ value and writes the matching LINKTYPE_ into the file header;
            // LINKTYPE_RAW (101) has no DLT of the same number, its DLT is DLT_RAW (12 on Linux).
            int dlt = linkType == LinkType.Raw ? (int)LinkType.RawDlt12 : (int)linkType;
            _device.Open(new DeviceConfiguration { LinkLayerType = (LinkLayers)dlt, Snaplen = snapLength });
        }
        catch (Exception e) when (e is PcapException or DllNotFoundException)
        {
            throw new CaptureFileException($"cannot write capture file '{path}': {e.Message.Trim()}", e);
        }
    }

    public LinkType LinkType { get; }

    /// <summary>Appends one packet with its timestamp (UTC, microsecond resolution).</summary>
    public void Write(ReadOnlySpan<byte> frame, DateTime timestampUtc)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long micros = (timestampUtc.ToUniversalTime() - DateTime.UnixEpoch).Ticks / 10;
        var timeval = new PosixTimeval((ulong)(micros / 1_000_000), (ulong)(micros % 1_000_000));
        var header = new PcapHeader((uint)timeval.Seconds, (uint)timeval.MicroSeconds, (uint)frame.Length, (uint)frame.Length);
        _device.Write(frame, ref header);
    }

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _device.Dispose();
        }
    }
}
