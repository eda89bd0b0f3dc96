using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>
/// One datagram handed to the kernel with MSG_DONTWAIT from the caller's stack: the shared core of
/// the binds' <see cref="IUdpBind.TrySend"/>. It takes no lock and never waits; no socket space
/// (EAGAIN, or ENOBUFS from a full device queue) is <see cref="SendAttempt.WouldBlock"/>.
/// </summary>
internal static unsafe class ImmediateSend
{
    public static SendAttempt Once(int fd, byte* name, uint nameLength, ReadOnlySpan<byte> datagram)
    {
        fixed (byte* p = datagram)
        {
            var iov = new IoVec { Base = p, Length = (nuint)datagram.Length };
            var message = new MMsgHdr { Header = new MsgHdr { Name = name, NameLength = nameLength, Iov = &iov, IovLength = 1 } };
            while (true)
            {
                if (LibC.SendMmsg(fd, &message, 1, LibC.MSG_DONTWAIT) == 1)
                {
                    return SendAttempt.Sent;
                }
                int errno = Marshal.GetLastPInvokeError();
                if (errno == LibC.EINTR)
                {
                    continue;
                }
                const int ENOBUFS = 105;
                return errno is LibC.EAGAIN or ENOBUFS ? SendAttempt.WouldBlock : SendAttempt.Refused;
            }
        }
    }
}
