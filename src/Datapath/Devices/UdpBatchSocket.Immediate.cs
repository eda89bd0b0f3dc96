using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

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
            byte* control = stackalloc byte[ControlSize];
            int first = 0; // the one message's datagram
            int controlLength = WriteControl(control, 0, destination);
            fixed (byte* p = datagram)
            {
                var iov = new IoVec { Base = p, Length = (nuint)datagram.Length };
                var message = new MMsgHdr { Header = new MsgHdr { Name = name, NameLength = nameLength, Iov = &iov, IovLength = 1 } };
                if (controlLength != 0)
                {
                    message.Header.Control = control;
                    message.Header.ControlLength = (nuint)controlLength;
                }
                while (true)
                {
                    if (LibC.SendMmsg(_fd, &message, 1, LibC.MSG_DONTWAIT) == 1)
                    {
                        return SendAttempt.Sent;
                    }
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == LibC.EINTR || ClearSource(&message, 0, 1, new ReadOnlySpan<int>(in first), new ReadOnlySpan<IpEndpoint>(in destination), errno))
                    {
                        continue;
                    }
                    // ENOBUFS: the device queue is full, as good as no socket space.
                    const int ENOBUFS = 105;
                    return errno is LibC.EAGAIN or ENOBUFS ? SendAttempt.WouldBlock : SendAttempt.Refused;
                }
            }
        }
        finally
        {
            Exit();
        }
    }
}
