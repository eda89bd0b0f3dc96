using FsCheck.Xunit;

namespace Gateway.Tunnel.Tests;

public class RobustnessTests
{
    private static readonly int[] InterestingSizes = [0, 1, 3, 4, 31, 32, 33, 47, 48, 64, 92, 148, 149, 200, 1500];

    [Property(MaxTest = 300)]
    public bool Random_datagrams_never_throw_and_are_dropped(int seed)
    {
        var rng = new Random(seed);
        using var p = new EnginePair();
        if (rng.Next(2) == 0) p.Handshake();
        for (int i = 0; i < 20; i++)
        {
            int size = rng.Next(2) == 0 ? InterestingSizes[rng.Next(InterestingSizes.Length)] : rng.Next(0, 300);
            var datagram = new byte[size];
            rng.NextBytes(datagram);
            if (size >= 4 && rng.Next(3) > 0)
            {
                datagram[0] = (byte)rng.Next(0, 6);
                datagram[1] = datagram[2] = datagram[3] = 0;
            }
            var r = p.B.Engine.Decapsulate(p.A.Endpoint, datagram);
            if (r.Action is not (TunnelAction.Drop or TunnelAction.None)) return false;
            if (r.Action == TunnelAction.None && r.Reason != TunnelEvent.CookieReplySent) return false;
        }
        return true;
    }

    [Property(MaxTest = 300)]
    public bool Random_outgoing_packets_never_throw(int seed)
    {
        var rng = new Random(seed);
        using var p = new EnginePair();
        p.Handshake();
        for (int i = 0; i < 20; i++)
        {
            var packet = new byte[rng.Next(0, 100)];
            rng.NextBytes(packet);
            if (packet.Length > 0 && rng.Next(2) == 0) packet[0] = (byte)(rng.Next(2) == 0 ? 0x45 : 0x60);
            var buffer = new byte[rng.Next(0, 200)];
            var r = p.A.Engine.Encapsulate(packet, buffer);
            if (r.Action == TunnelAction.SendToNetwork && (r.Length > buffer.Length || (r.Length - 32) % 16 != 0)) return false;
        }
        return true;
    }
}
