namespace Gateway.Datapath.Devices.Interop;

/// <summary>Linux constants shared by the device interop files (x86_64 and arm64 values).</summary>
internal static partial class LibC
{
    public const string Name = "libc";

    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int EBADF = 9;
    public const int EINVAL = 22;
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EBUSY = 16;

    public const int O_RDWR = 0x2;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;

    public const short POLLIN = 0x1;
    public const short POLLOUT = 0x4;
    public const short POLLERR = 0x8;
    public const short POLLHUP = 0x10;

    public const int EFD_CLOEXEC = 0x80000;
    public const int EFD_NONBLOCK = 0x800;

    public const int MSG_DONTWAIT = 0x40;

    public const int SOL_SOCKET = 1;
    public const int SO_SNDBUF = 7;
    public const int SO_RCVBUF = 8;
    public const int SO_SNDBUFFORCE = 32;
    public const int SO_RCVBUFFORCE = 33;

    public const ushort AF_INET = 2;
    public const ushort AF_INET6 = 10;
}

internal struct PollFd
{
    public int Fd;
    public short Events;
    public short Revents;
}

internal unsafe struct IoVec
{
    public void* Base;
    public nuint Length;
}

internal unsafe struct MsgHdr
{
    public void* Name;
    public uint NameLength;
    public IoVec* Iov;
    public nuint IovLength;
    public void* Control;
    public nuint ControlLength;
    public int Flags;
}

internal struct MMsgHdr
{
    public MsgHdr Header;
    public uint Length;
}
