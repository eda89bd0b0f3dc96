using System.Collections.Concurrent;

namespace Gateway.Tunnel.Tests;

public class ConcurrencyTests
{
    [Fact]
    public void Parallel_seal_and_open_for_one_peer_while_rekeying()
    {
        using var p = new EnginePair();
        p.Handshake();
        var errors = new ConcurrentQueue<Exception>();
        int delivered = 0, sealedCount = 0;
        var packet = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, 200);
        var reverse = Packets.Icmp4(p.B.TunnelAddress, p.A.TunnelAddress, 2, 200);
        using var stop = new CancellationTokenSource();

        void Pump(Node from, Node to, byte[] pkt)
        {
            var buffer = new byte[512];
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var r = from.Engine.Encapsulate(pkt, buffer);
                    if (r.Action != TunnelAction.SendToNetwork) continue;
                    Interlocked.Increment(ref sealedCount);
                    var d = to.Engine.Decapsulate(from.Endpoint, buffer.AsSpan(0, r.Length));
                    if (d.Action == TunnelAction.DeliverToTun) Interlocked.Increment(ref delivered);
                    else if (d.Reason is not (TunnelEvent.KeypairExpired or TunnelEvent.UnknownIndex))
                        throw new InvalidOperationException($"unexpected {d}");
                }
                catch (Exception e)
                {
                    errors.Enqueue(e);
                    return;
                }
            }
        }

        var t1 = new Thread(() => Pump(p.A, p.B, packet));
        var t2 = new Thread(() => Pump(p.B, p.A, reverse));
        t1.Start();
        t2.Start();
        // Rekey repeatedly underneath: every rotation retires an older keypair that the pumping
        // threads may still be using.
        for (int round = 0; round < 15; round++)
        {
            p.Clock.Advance(TimeSpan.FromSeconds(6));
            p.A.Engine.InitiateHandshake(p.PeerBOnA);
            for (int i = 0; i < 4; i++)
            {
                foreach (var (_, data) in p.A.Output.Drain()) p.B.Engine.Decapsulate(p.A.Endpoint, (byte[])data.Clone());
                foreach (var (_, data) in p.B.Output.Drain()) p.A.Engine.Decapsulate(p.B.Endpoint, (byte[])data.Clone());
            }
            Thread.Yield();
        }
        stop.Cancel();
        t1.Join();
        t2.Join();
        Assert.Empty(errors);
        Assert.True(delivered > 0);
        Assert.True(sealedCount >= delivered);
    }
}
