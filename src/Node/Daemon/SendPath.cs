using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Datapath.Offload;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// The send path, TUN to network, in three steps: the reader thread reads a batch from TUN and
/// runs the egress stage on each packet in read order (routing, policy, session and counter);
/// any crypto worker seals the batch; the batches then leave in read order, one sendmmsg each.
/// </summary>
internal sealed class SendPath
{
    /// <summary>A batch of packets read from TUN: sealed in place, then sent with one sendmmsg.</summary>
    internal sealed unsafe class OutboundBatch
    {
        public readonly int SlotSize;
        public readonly byte[] Slab;   // pinned: its address is handed to sendmmsg
        public readonly byte* Base;
        public int Count;              // packets read into the batch
        public readonly int[] Offsets; // the datagram's place in its slot; Lengths[i] == 0: nothing to send
        public readonly int[] Lengths;
        public readonly IpEndpoint[] Destinations;
        public readonly SealTicket[] Tickets;
        public int SendCount;
        public readonly nint[] SendPointers;
        public readonly int[] SendLengths;
        public readonly IpEndpoint[] SendDestinations;

        public OutboundBatch(int capacity, int slotSize)
        {
            SlotSize = slotSize;
            Slab = GC.AllocateUninitializedArray<byte>(slotSize * capacity, pinned: true);
            Base = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Slab));
            Offsets = new int[capacity];
            Lengths = new int[capacity];
            Destinations = new IpEndpoint[capacity];
            Tickets = new SealTicket[capacity];
            SendPointers = new nint[capacity];
            SendLengths = new int[capacity];
            SendDestinations = new IpEndpoint[capacity];
        }

        public Span<byte> Slot(int i) => Slab.AsSpan(i * SlotSize, SlotSize);
    }

    private readonly TunDevice _tun;
    private readonly UdpBatchSocket _socket;
    private readonly WireGuardEngine _engine;
    private readonly IEgressStage _egress;
    private readonly NodeMetrics _metrics;
    private readonly int _batchSize;
    private readonly int _slotSize;
    private OrderedStage<OutboundBatch>? _stage;

    public SendPath(TunDevice tun, UdpBatchSocket socket, WireGuardEngine engine, IEgressStage egress, NodeMetrics metrics, int batchSize, int mtu)
    {
        _tun = tun;
        _socket = socket;
        _engine = engine;
        _egress = egress;
        _metrics = metrics;
        _batchSize = batchSize;
        // Room for the headers in front, and padding plus tag behind, of an MTU-sized packet.
        _slotSize = (egress.Headroom + mtu + 16 + 16 + 63) & ~63;
    }

    /// <summary>Creates the ring of <paramref name="ring"/> batches on the crypto pool.</summary>
    public void Attach(CryptoPool pool, int ring)
    {
        var batches = new OutboundBatch[ring];
        for (int i = 0; i < ring; i++)
        {
            batches[i] = new OutboundBatch(_batchSize, _slotSize);
        }
        _stage = pool.AddStage(batches, SealBatch, SendBatch);
    }

    /// <summary>The reader thread's loop; returns when the device closes or the pool stops.</summary>
    public void Run(CancellationToken stop)
    {
        if (_tun.HasVnetHeader)
        {
            RunWithOffloads(stop);
            return;
        }
        var tun = _tun;
        var stage = _stage!;
        int headroom = _egress.Headroom;
        while (!stop.IsCancellationRequested)
        {
            var batch = stage.TryAcquire(wait: true);
            if (batch is null)
            {
                return;
            }
            int n = tun.Read(batch.Slot(0)[headroom..]);
            if (n < 0)
            {
                return;
            }
            int count = 0;
            while (true)
            {
                Begin(batch, count, n);
                count++;
                if (count == _batchSize)
                {
                    break;
                }
                n = tun.TryRead(batch.Slot(count)[headroom..]);
                if (n <= 0)
                {
                    break;
                }
            }
            batch.Count = count;
            stage.Publish(batch);
        }
    }

    /// <summary>The in-order half for the packet in slot <paramref name="index"/> (at the headroom).</summary>
    private void Begin(OutboundBatch batch, int index, int length)
    {
        var result = _egress.Begin(batch.Slot(index), length, out batch.Tickets[index]);
        batch.Offsets[index] = result.Offset;
        batch.Lengths[index] = result.Action == StageAction.Send ? result.Length : 0;
        batch.Destinations[index] = result.Endpoint;
    }

    /// <summary>
    /// The TUN reader with offloads: each read is a virtio_net_hdr and a packet, which may be a TCP
    /// super-packet of up to 64 KiB (cut here into MSS-sized segments, one slot each, as a NIC would)
    /// or carry a partial checksum (completed here). One read can thus fill most of a batch.
    /// </summary>
    private void RunWithOffloads(CancellationToken stop)
    {
        var tun = _tun;
        var stage = _stage!;
        int headroom = _egress.Headroom;
        int batchSize = _batchSize;
        var scratch = GC.AllocateUninitializedArray<byte>(VirtioNetHeader.Size + 65536, pinned: true);
        var batch = stage.TryAcquire(wait: true);
        int count = 0;
        while (batch is not null && !stop.IsCancellationRequested)
        {
            int capacity = batch.SlotSize - headroom - 2 * Messages.TagSize; // room for padding and tag
            int n = count == 0 ? tun.Read(scratch) : tun.TryRead(scratch);
            if (n < 0)
            {
                return;
            }
            if (n == 0)
            {
                HandOver(); // nothing more queued
                continue;
            }
            if (n <= VirtioNetHeader.Size)
            {
                Interlocked.Increment(ref _metrics.TunOffloadInvalid);
                continue;
            }
            var header = VirtioNetHeader.Read(scratch);
            var packet = scratch.AsSpan(VirtioNetHeader.Size, n - VirtioNetHeader.Size);
            if (header.Gso == GsoType.None)
            {
                if ((header.NeedsChecksum && !TcpSegmenter.TryCompleteChecksum(packet, header.ChecksumStart, header.ChecksumOffset)) ||
                    packet.Length > capacity)
                {
                    Interlocked.Increment(ref _metrics.TunOffloadInvalid);
                    continue;
                }
                packet.CopyTo(batch.Slot(count)[headroom..]);
                Begin(batch, count, packet.Length);
                count++;
            }
            else
            {
                if (!TcpSegmenter.TryGetLayout(packet, header, out var layout) || layout.HeaderLength + layout.Mss > capacity)
                {
                    Interlocked.Increment(ref _metrics.TunOffloadInvalid);
                    continue;
                }
                _metrics.SuperPacketsRead++;
                for (int i = 0; i < layout.Count && batch is not null; i++)
                {
                    int length = TcpSegmenter.WriteSegment(packet, layout, i, batch.Slot(count)[headroom..]);
                    Begin(batch, count, length);
                    count++;
                    if (count == batchSize && i + 1 < layout.Count)
                    {
                        HandOver();
                    }
                }
            }
            if (batch is not null && count == batchSize)
            {
                HandOver();
            }
        }

        // Publishes the batch filled so far and waits for the next free one (null once stopping).
        void HandOver()
        {
            batch.Count = count;
            stage.Publish(batch);
            batch = stage.TryAcquire(wait: true);
            count = 0;
        }
    }

    // Step 2 (any worker): the AEAD.
    private unsafe void SealBatch(OutboundBatch batch)
    {
        var engine = _engine;
        int sends = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            ref var ticket = ref batch.Tickets[i];
            if (ticket.IsPending)
            {
                bool sealedOk = engine.CompleteEncapsulate(ticket, batch.Slot(i)[batch.Offsets[i]..]);
                ticket = default; // let go of the session
                if (!sealedOk)
                {
                    continue;
                }
            }
            if (batch.Lengths[i] == 0)
            {
                continue;
            }
            batch.SendPointers[sends] = (nint)(batch.Base + i * batch.SlotSize + batch.Offsets[i]);
            batch.SendLengths[sends] = batch.Lengths[i];
            batch.SendDestinations[sends] = batch.Destinations[i];
            sends++;
        }
        batch.SendCount = sends;
    }

    // Step 3 (in order): one sendmmsg.
    private void SendBatch(OutboundBatch batch)
    {
        if (batch.SendCount > 0)
        {
            _socket.SendBatch(batch.SendPointers.AsSpan(0, batch.SendCount), batch.SendLengths.AsSpan(0, batch.SendCount),
                batch.SendDestinations.AsSpan(0, batch.SendCount));
        }
        _egress.EndBatch();
    }
}
