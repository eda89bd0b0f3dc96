using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// The receive path, network to TUN, in three steps: the reader thread takes a batch of
/// datagrams from the bind; any crypto worker authenticates and decrypts it (the ingress
/// stage's first half); the batches then go through the stage's in-order half (replay window,
/// timers, source and policy checks) and to the TUN device in arrival order, in one write call
/// (the device merges runs of one flow into super-packets when it has offloads).
/// </summary>
internal sealed class ReceivePath
{
    /// <summary>Any datagram a peer may send.</summary>
    public const int DatagramCapacity = 65536;

    /// <summary>A batch of datagrams from one receive: opened in place, then handled in order.</summary>
    internal sealed class InboundBatch
    {
        public readonly PacketBuffer[] Buffers; // owned by the batch for the node's life
        public int Count;
        public readonly IpEndpoint[] Sources;
        public readonly OpenTicket[] Tickets;
        public readonly StageResult[] Results;  // final results of the first half (not pending)
        public readonly PacketBuffer[] Deliveries;

        public InboundBatch(PacketBufferPool pool, int capacity)
        {
            Buffers = new PacketBuffer[capacity];
            for (int i = 0; i < capacity; i++)
            {
                if (!pool.TryRent(out Buffers[i]))
                {
                    throw new InvalidOperationException("The receive pool is smaller than its batches.");
                }
            }
            Sources = new IpEndpoint[capacity];
            Tickets = new OpenTicket[capacity];
            Results = new StageResult[capacity];
            Deliveries = new PacketBuffer[capacity];
        }
    }

    private readonly IBatchTunDevice _tun;
    private readonly IUdpBind _bind;
    private readonly IIngressStage _ingress;
    private readonly WireGuardEngine _engine;
    private readonly NodeMetrics _metrics;
    private readonly int _batchSize;
    private OrderedStage<InboundBatch>? _stage;
    private InboundBatch? _overflow;
    private long _allocated;

    /// <summary>Where handshake messages go instead of the crypto workers' engine calls: their own
    /// bounded queue and worker (null: the ingress stage handles them inline).</summary>
    public HandshakeQueue? Handshakes { get; init; }

    /// <summary>Bytes the reader thread has allocated so far (read per batch, for the 0 B/packet tests).</summary>
    public long AllocatedBytes => Volatile.Read(ref _allocated);

    public ReceivePath(IBatchTunDevice tun, IUdpBind bind, WireGuardEngine engine, IIngressStage ingress, NodeMetrics metrics, int batchSize)
    {
        _engine = engine;
        _tun = tun;
        _bind = bind;
        _ingress = ingress;
        _metrics = metrics;
        _batchSize = batchSize;
    }

    /// <summary>Creates the ring of <paramref name="ring"/> batches on the crypto pool.</summary>
    public void Attach(CryptoPool pool, int ring)
    {
        // Pinned and only touched as far as datagrams reach, like the kernel's own receive buffers.
        var buffers = new PacketBufferPool((ring + 1) * _batchSize, PacketBufferPool.DefaultHeadroom + DatagramCapacity);
        var batches = new InboundBatch[ring];
        for (int i = 0; i < ring; i++)
        {
            batches[i] = new InboundBatch(buffers, _batchSize);
        }
        _overflow = new InboundBatch(buffers, _batchSize);
        _stage = pool.AddStage(batches, OpenBatch, DeliverBatch);
    }

    // Step 1 (reader thread): one receive. When every batch is still in flight the workers are
    // behind: the datagrams are read anyway (so the socket keeps draining) and dropped, counted
    // as ReceiveQueueFull.
    public void Run(CancellationToken stop)
    {
        var bind = _bind;
        var stage = _stage!;
        var overflow = _overflow!;
        while (!stop.IsCancellationRequested)
        {
            var batch = stage.TryAcquire(wait: false);
            var target = batch ?? overflow;
            var buffers = target.Buffers;
            for (int i = 0; i < buffers.Length; i++)
            {
                buffers[i].Reset(PacketBufferPool.DefaultHeadroom);
            }
            int n = bind.Receive(buffers, target.Sources);
            if (n < 0)
            {
                return;
            }
            if (batch is null)
            {
                Interlocked.Add(ref _metrics.ReceiveQueueFull, n);
                continue;
            }
            batch.Count = n;
            stage.Publish(batch);
            Volatile.Write(ref _allocated, GC.GetAllocatedBytesForCurrentThread());
        }
    }

    // Step 2 (any worker): authenticate and decrypt; handshake messages are handled entirely here.
    private void OpenBatch(InboundBatch batch)
    {
        var ingress = _ingress;
        var handshakes = Handshakes;
        long now = _engine.ReadClock(); // once per batch: the tickets carry it to the in-order half
        for (int i = 0; i < batch.Count; i++)
        {
            var buffer = batch.Buffers[i];
            if (handshakes is not null && handshakes.TryDivert(batch.Sources[i], buffer.Region.Slice(buffer.Headroom, buffer.Length)))
            {
                batch.Results[i] = default;
                batch.Tickets[i] = default;
                continue;
            }
            batch.Results[i] = ingress.Begin(batch.Sources[i], buffer.Region[buffer.Headroom..], buffer.Length, now, out batch.Tickets[i]);
        }
    }

    // Step 3 (in order): replay window, timers, source checks, policy, then TUN.
    private void DeliverBatch(InboundBatch batch)
    {
        var ingress = _ingress;
        int deliveries = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            var buffer = batch.Buffers[i];
            int slotStart = buffer.Headroom;
            var slot = buffer.Region[slotStart..];
            ref var ticket = ref batch.Tickets[i];
            var result = ticket.IsPending ? ingress.Complete(ticket, batch.Sources[i], slot, buffer.Length) : batch.Results[i];
            ticket = default;
            batch.Results[i] = default;
            if (result.Action == StageAction.Deliver)
            {
                buffer.SetData(slotStart + result.Offset, result.Length);
                batch.Deliveries[deliveries++] = buffer;
            }
            else if (result.Action == StageAction.Send)
            {
                _bind.Send(slot.Slice(result.Offset, result.Length), result.Endpoint);
            }
        }
        if (deliveries > 0)
        {
            _tun.Write(batch.Deliveries.AsSpan(0, deliveries));
        }
        ingress.EndBatch();
    }
}
