namespace Gateway.Datapath.Devices;

/// <summary>
/// A TUN device that moves many packets per call, in the manner of wireguard-go's tun.Device.
/// Offloads live inside the device: a TCP or UDP super-packet the kernel hands over is cut into
/// plain packets on <see cref="Read"/>, and runs of one flow's packets are merged into
/// super-packets on <see cref="Write"/>, so callers only ever see complete IP packets. Buffers
/// are the project's pooled <see cref="PacketBuffer"/>s. The data path reaches TUN only through
/// this interface (<see cref="TunDevice"/> for the kernel, <see cref="MemoryTunDevice"/> for tests).
/// </summary>
public interface IBatchTunDevice : IDisposable
{
    /// <summary>The interface name.</summary>
    string Name { get; }

    /// <summary>True when the kernel hands over and takes super-packets (the device cuts and merges them).</summary>
    bool OffloadsEnabled { get; }

    /// <summary>True for a kernel interface whose addresses, MTU and routes the node configures.</summary>
    bool IsKernelDevice { get; }

    /// <summary>
    /// Reads packets into <paramref name="buffers"/>, waiting for the first: packet i is written at
    /// buffers[i]'s data start (its <see cref="PacketBuffer.WritableTail"/>) and its length set.
    /// Returns how many buffers were filled (at least 1), or -1 once the device is closed.
    /// </summary>
    int Read(ReadOnlySpan<PacketBuffer> buffers);

    /// <summary>
    /// Writes the IP packets in <paramref name="packets"/> (their <see cref="PacketBuffer.Data"/>),
    /// in order. The device may use up to 16 bytes of each buffer's headroom. Returns the
    /// packets the kernel refused (counted in <see cref="Counters"/>).
    /// </summary>
    int Write(ReadOnlySpan<PacketBuffer> packets);

    /// <summary>What the device did with offloads and what it dropped.</summary>
    TunCounters Counters { get; }
}

/// <summary>Counters of a batch TUN device (read without locks; each is written by one thread).</summary>
public sealed class TunCounters
{
    /// <summary>Super-packets read and cut into packets.</summary>
    public long SuperPacketsRead;
    /// <summary>Super-packets written, each merged from a run of packets.</summary>
    public long SuperPacketsWritten;
    /// <summary>Reads whose virtio_net_hdr or packet did not make sense (dropped).</summary>
    public long OffloadInvalid;
    /// <summary>Packets the kernel refused on write.</summary>
    public long WriteFailures;
}
