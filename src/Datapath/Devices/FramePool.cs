namespace Gateway.Datapath.Devices;

/// <summary>
/// The frame arrays of the in-memory devices: reused through a free list, so that once a test's
/// traffic has reached its peak nothing is allocated (ArrayPool's per-core caches are too small
/// for a batch in flight and allocate). Thread-safe.
/// </summary>
internal sealed class FramePool
{
    private readonly Stack<byte[]> _small = new();   // 2 KiB: any packet up to a normal MTU
    private readonly Stack<byte[]> _large = new();   // 64 KiB + header: super-packets
    private const int Small = 2048;
    private const int Large = 65536 + 64;

    /// <param name="prefill">Small frames made up front: more than a test keeps in flight.</param>
    public FramePool(int prefill = 1024)
    {
        for (int i = 0; i < prefill; i++)
        {
            _small.Push(new byte[Small]);
        }
    }

    public byte[] Rent(int length)
    {
        var stack = length <= Small ? _small : _large;
        lock (stack)
        {
            if (stack.TryPop(out var bytes))
            {
                return bytes;
            }
        }
        return length <= Small ? new byte[Small] : new byte[Math.Max(length, Large)];
    }

    public void Return(byte[] bytes)
    {
        var stack = bytes.Length == Small ? _small : _large;
        lock (stack)
        {
            stack.Push(bytes);
        }
    }
}
