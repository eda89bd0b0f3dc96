namespace Gateway.Tunnel.Tests;

/// <summary>The scenarios of the Linux kernel's drivers/net/wireguard/selftest/counter.c, ported.
/// T_LIM = COUNTER_WINDOW_SIZE + 1; REJECT_AFTER_MESSAGES is the engine's constant.</summary>
public class ReplayWindowTests
{
    private const ulong WindowSize = ReplayWindow.WindowSize; // 8128
    private const ulong Lim = WindowSize + 1;
    private const ulong Reject = WireGuardConstants.RejectAfterMessages;

    [Fact]
    public void Window_is_8128()
    {
        Assert.Equal(8128, ReplayWindow.WindowSize);
    }

    [Fact]
    public void Kernel_selftest_sequence()
    {
        var w = new ReplayWindow();
        (ulong n, bool v)[] steps =
        [
            (0, true), (1, true), (1, false), (9, true), (8, true), (7, true), (7, false),
            (Lim, true), (Lim - 1, true), (Lim - 1, false), (Lim - 2, true), (2, true), (2, false),
            (Lim + 16, true), (3, false), (Lim + 16, false), (Lim * 4, true), (Lim * 4 - (Lim - 1), true),
            (10, false), (Lim * 4 - Lim, false), (Lim * 4 - (Lim + 1), false), (Lim * 4 - (Lim - 2), true),
            (Lim * 4 + 1 - Lim, false), (0, false), (Reject, false), (Reject - 1, true), (Reject, false),
            (Reject - 1, false), (Reject - 2, true), (Reject + 1, false), (Reject + 2, false), (Reject - 2, false),
            (Reject - 3, true), (0, false),
        ];
        for (int i = 0; i < steps.Length; i++)
            Assert.True(w.TryAccept(steps[i].n) == steps[i].v, $"kernel test {i + 1}: counter {steps[i].n} expected {steps[i].v}");
    }

    [Fact]
    public void Ascending_full_window_then_zero()
    {
        var w = new ReplayWindow();
        for (ulong i = 1; i <= WindowSize; i++) Assert.True(w.TryAccept(i), $"counter {i}");
        Assert.True(w.TryAccept(0));
        Assert.False(w.TryAccept(0));
    }

    [Fact]
    public void Ascending_from_two_then_one_accepted_zero_too_old()
    {
        var w = new ReplayWindow();
        for (ulong i = 2; i <= WindowSize + 1; i++) Assert.True(w.TryAccept(i), $"counter {i}");
        Assert.True(w.TryAccept(1));
        Assert.False(w.TryAccept(0));
    }

    [Fact]
    public void Descending_from_window_size()
    {
        var w = new ReplayWindow();
        for (ulong i = WindowSize + 1; i-- > 0;) Assert.True(w.TryAccept(i), $"counter {i}");
    }

    [Fact]
    public void Descending_from_window_size_plus_one_then_zero_too_old()
    {
        var w = new ReplayWindow();
        for (ulong i = WindowSize + 2; i-- > 1;) Assert.True(w.TryAccept(i), $"counter {i}");
        Assert.False(w.TryAccept(0));
    }

    [Fact]
    public void Descending_to_one_then_top_then_zero()
    {
        var w = new ReplayWindow();
        for (ulong i = WindowSize + 1; i-- > 1;) Assert.True(w.TryAccept(i), $"counter {i}");
        Assert.True(w.TryAccept(WindowSize + 1));
        Assert.False(w.TryAccept(0));
    }

    [Fact]
    public void Descending_to_one_then_zero_then_top()
    {
        var w = new ReplayWindow();
        for (ulong i = WindowSize + 1; i-- > 1;) Assert.True(w.TryAccept(i), $"counter {i}");
        Assert.True(w.TryAccept(0));
        Assert.True(w.TryAccept(WindowSize + 1));
    }

    [Fact]
    public void Random_order_agrees_with_a_set_reference()
    {
        var rng = new Random(7);
        var w = new ReplayWindow();
        var seen = new HashSet<ulong>();
        ulong top = 0;
        bool any = false;
        for (int i = 0; i < 50_000; i++)
        {
            ulong c = (ulong)rng.Next(0, 40_000);
            bool expected = !seen.Contains(c) && (!any || c + WindowSize >= top);
            Assert.Equal(expected, w.TryAccept(c));
            if (expected)
            {
                seen.Add(c);
                if (!any || c > top) top = c;
                any = true;
            }
        }
    }
}
