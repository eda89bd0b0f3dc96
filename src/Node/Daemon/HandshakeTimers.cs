using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// Handshakes and timers: the engine's clock-driven work (retransmitted initiations, keepalives,
/// rekeying, expiring keys) ticks here every 100 ms, and every message the engine sends on its
/// own (handshake initiations, responses, cookie replies, keepalives) leaves through this output.
/// </summary>
internal sealed class HandshakeTimers : ITunnelOutput
{
    private IUdpBind? _bind;

    /// <summary>The bind the engine's own messages leave by: the data path's (set once it is bound).</summary>
    public void Attach(IUdpBind bind) => Volatile.Write(ref _bind, bind);

    public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram) =>
        Volatile.Read(ref _bind)?.Send(datagram, destination);

    /// <summary>The timer thread's loop; returns when <paramref name="stop"/> is cancelled.</summary>
    public static void Run(WireGuardEngine engine, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        while (!stop.IsCancellationRequested)
        {
            try
            {
                if (!timer.WaitForNextTickAsync(stop).AsTask().GetAwaiter().GetResult())
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            engine.Tick();
        }
    }
}
