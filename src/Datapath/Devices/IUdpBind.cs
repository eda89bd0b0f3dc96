namespace Gateway.Datapath.Devices;

/// <summary>
/// A UDP endpoint that moves many datagrams per call, in the manner of wireguard-go's conn.Bind:
/// batches of pooled <see cref="PacketBuffer"/>s in and out, segmentation offload (UDP GSO) and
/// receive coalescing (UDP GRO) inside. The data path, handshake messages included, reaches the
/// network only through this interface (<see cref="UdpBatchSocket"/> for the kernel,
/// <see cref="MemoryBind"/> for tests).
/// </summary>
public interface IUdpBind : IDisposable
{
    /// <summary>The bound port.</summary>
    ushort LocalPort { get; }

    /// <summary>
    /// Receives datagrams, waiting for the first: datagram i lands at buffers[i]'s data start and
    /// its source in <paramref name="sources"/>[i], with the local address it arrived on when the
    /// bind knows it (<see cref="IpEndpoint.LocalAddress"/>). Datagrams larger than a buffer are
    /// dropped and counted. Returns how many buffers were filled, or -1 once closed.
    /// </summary>
    int Receive(ReadOnlySpan<PacketBuffer> buffers, Span<IpEndpoint> sources);

    /// <summary>
    /// Sends packets[i]'s data to destinations[i] for every i, in order, each from the local address
    /// its destination carries while the host still has it (sticky source). Returns how many the
    /// kernel took; datagrams it refuses outright (no route) are skipped.
    /// </summary>
    int Send(ReadOnlySpan<PacketBuffer> packets, ReadOnlySpan<IpEndpoint> destinations);

    /// <summary>Sends one datagram (handshake messages and keepalives from the timer thread).</summary>
    bool Send(ReadOnlySpan<byte> datagram, in IpEndpoint destination);

    /// <summary>
    /// Sends one datagram without ever waiting: no socket space now means
    /// <see cref="SendAttempt.WouldBlock"/>, and the caller keeps the bytes for later. Safe on any
    /// thread at any time, also while the data path's batch send waits for space, so the engine
    /// may call it under its locks.
    /// </summary>
    SendAttempt TrySend(ReadOnlySpan<byte> datagram, in IpEndpoint destination);

    /// <summary>Datagrams dropped on receive because they did not fit a buffer.</summary>
    long OversizedDatagrams { get; }

    /// <summary>The firewall mark on outgoing datagrams (WireGuard's fwmark); 0 = none.</summary>
    uint Mark { get; }

    /// <summary>Sets the firewall mark (SO_MARK on a kernel socket); 0 clears it. Throws
    /// <see cref="DeviceException"/> when refused.</summary>
    void SetMark(uint mark);

    /// <summary>
    /// Moves the bind to <paramref name="port"/> (0 = any free port) on the same address while
    /// the data path keeps using it (WireGuard's listen_port). A port in use throws
    /// <see cref="DeviceException"/> and changes nothing. Returns the bound port.
    /// </summary>
    ushort Rebind(ushort port);
}

/// <summary>The outcome of <see cref="IUdpBind.TrySend"/>.</summary>
public enum SendAttempt : byte
{
    /// <summary>The kernel took the datagram.</summary>
    Sent,
    /// <summary>The socket has no room now; nothing was sent.</summary>
    WouldBlock,
    /// <summary>The datagram cannot be sent at all (no route, wrong family, closed).</summary>
    Refused,
}
