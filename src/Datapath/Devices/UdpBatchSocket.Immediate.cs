namespace Gateway.Datapath.Devices;

public sealed unsafe partial class UdpBatchSocket
{
    /// <summary>
    /// Sends one datagram with MSG_DONTWAIT from scratch on the caller's stack: it takes no lock
    /// (the batch send's lock may be held by a thread waiting for socket space) and never waits.
    /// The kernel serialises concurrent sends on one socket itself.
    /// </summary>
    public SendAttempt TrySend(ReadOnlySpan<byte> datagram, in IpEndpoint destination)
    {
        if (!Enter())
        {
            return SendAttempt.Refused;
        }
        try
        {
            byte* name = stackalloc byte[NameSize];
            uint nameLength = WriteSockaddr(destination, name);
            if (nameLength == 0)
            {
                return SendAttempt.Refused;
            }
            return ImmediateSend.Once(_fd, name, nameLength, datagram);
        }
        finally
        {
            Exit();
        }
    }
}
