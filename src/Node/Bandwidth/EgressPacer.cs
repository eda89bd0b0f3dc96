using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Datapath.Shaping;
using Gateway.Node.Daemon;
using Gateway.Node.Overlay;
using Gateway.Tunnel;

namespace Gateway.Node.Bandwidth;

/// <summary>
/// The thread that sends held packets at their departure times: it sleeps until the earliest
/// departure of any pod (<see cref="PreciseWaiter"/>: ppoll with a nanosecond timeout, then a
/// short spin), takes every packet that is due from the departure queues into a batch, and sends
/// the batch the way the send path does: overlay egress (policy, VXLAN with the pod's identity),
/// WireGuard seal, one bind call. A late wake-up releases all packets that became due together,
/// so the rate over a run stays the configured one even when the machine is loaded.
/// </summary>
public sealed class EgressPacer : IDisposable
{
    private readonly BandwidthManager _manager;
    private readonly OverlayRuntime _runtime;
    private readonly WireGuardEngine _engine;
    private readonly IUdpBind _bind;
    private readonly PreciseWaiter _waiter = new();
    private readonly PacketBuffer[] _buffers;
    private readonly PacketBuffer[] _sends;
    private readonly IpEndpoint[] _destinations;
    private readonly Func<long> _now;
    private readonly Action<string> _fail;
    private readonly CancellationTokenSource _stop = new();
    private Thread? _thread;
    private long _allocated;

    public EgressPacer(BandwidthManager manager, OverlayRuntime runtime, WireGuardEngine engine, IUdpBind bind, int mtu, int batchSize, Action<string> fail)
    {
        _manager = manager;
        _runtime = runtime;
        _engine = engine;
        _bind = bind;
        _fail = fail;
        var pool = new PacketBufferPool(batchSize, PacketBufferPool.DefaultHeadroom + mtu + 2 * Messages.TagSize);
        _buffers = new PacketBuffer[batchSize];
        for (int i = 0; i < batchSize; i++)
        {
            pool.TryRent(out _buffers[i]);
        }
        _sends = new PacketBuffer[batchSize];
        _destinations = new IpEndpoint[batchSize];
        _now = () => manager.NowNs;
        manager.Waiter = _waiter;
    }

    /// <summary>Bytes the pacer thread has allocated so far (updated per batch; 0 per packet is the rule).</summary>
    public long AllocatedBytes => Volatile.Read(ref _allocated);

    public void Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "gw-pacer", Priority = ThreadPriority.AboveNormal };
        _thread.Start();
    }

    private void Run()
    {
        try
        {
            var stop = _stop.Token;
            while (!stop.IsCancellationRequested)
            {
                _waiter.Arm();
                _manager.PlanWake(long.MaxValue);
                int n = _manager.Release(_manager.NowNs, _buffers, PacketBufferPool.DefaultHeadroom, out long next);
                if (n > 0)
                {
                    Send(n);
                    Volatile.Write(ref _allocated, GC.GetAllocatedBytesForCurrentThread());
                    continue; // more may be due (a full batch), and the next departure is recomputed
                }
                _manager.PlanWake(next);
                _waiter.WaitUntil(_now, next);
            }
        }
        catch (Exception e) when (!_stop.IsCancellationRequested)
        {
            _fail($"bandwidth pacer stopped: {e.Message}");
        }
    }

    /// <summary>Sends released packets through the overlay egress stage, the seal and the bind.</summary>
    private void Send(int n)
    {
        var pipeline = _runtime.Pipeline;
        int sends = 0;
        for (int i = 0; i < n; i++)
        {
            var buffer = _buffers[i];
            int start = buffer.Headroom;
            var result = pipeline.BeginOutbound(buffer.Region, start, buffer.Length, out var ticket);
            if (result.Action == OverlayAction.Deliver)
            {
                // For a pod of this node (a local backend, its replies): to the kernel, as the egress stage does.
                _runtime.Inject(buffer.Region.Slice(result.Offset, result.Length));
                continue;
            }
            if (result.Action != OverlayAction.Send)
            {
                continue; // dropped by policy (counted there), or a reply to TUN the pacer does not write
            }
            buffer.SetData(result.Offset, result.Length);
            if (ticket.IsPending && !_engine.CompleteEncapsulate(ticket, buffer.Region[buffer.Headroom..]))
            {
                continue;
            }
            _sends[sends] = buffer;
            _destinations[sends] = result.Endpoint;
            sends++;
        }
        if (sends > 0)
        {
            _bind.Send(_sends.AsSpan(0, sends), _destinations.AsSpan(0, sends));
        }
        _runtime.FlowLog?.Notify();
    }

    public void Dispose()
    {
        _stop.Cancel();
        _waiter.Wake();
        _waiter.Arm();
        _waiter.Wake();
        _thread?.Join(TimeSpan.FromSeconds(5));
        _waiter.Dispose();
        _stop.Dispose();
    }
}
