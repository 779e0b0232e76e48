using Kvasir.Cli;

namespace Kvasir.Cli.Tests;

public class CommandLineTests
{
    private static readonly string[] Values = ["server", "port"];
    private static readonly string[] Flags = ["json", "no-verify"];

    private static CommandLine Parse(params string[] args) => CommandLine.Parse(args, Values, Flags);

    [Fact]
    public void An_unknown_option_is_a_usage_error_naming_it()
    {
        var ex = Assert.Throws<UsageException>(() => Parse("--bogus", "1"));
        Assert.Equal("unknown option --bogus", ex.Message);
    }

    [Fact]
    public void An_unknown_option_in_name_equals_value_form_is_reported_as_unknown()
    {
        var ex = Assert.Throws<UsageException>(() => Parse("--bogus=1"));
        Assert.Contains("unknown option --bogus", ex.Message);
    }

    [Fact]
    public void A_value_option_at_the_end_without_a_value_is_a_usage_error()
    {
        var ex = Assert.Throws<UsageException>(() => Parse("KEY", "--server"));
        Assert.Equal("option --server needs a value", ex.Message);
    }

    [Fact]
    public void A_value_option_takes_the_next_argument()
    {
        var cl = Parse("--server", "10.0.0.1:1", "KEY");
        Assert.Equal("10.0.0.1:1", cl.Get("server"));
        Assert.Equal(["KEY"], cl.Positionals);
    }

    [Fact]
    public void The_name_equals_value_form_sets_the_option_and_keeps_later_equals_signs()
    {
        var cl = Parse("--server=h:1", "--port=a=b");
        Assert.Equal("h:1", cl.Get("server"));
        Assert.Equal("a=b", cl.Get("port"));
        Assert.Empty(cl.Positionals);
    }

    [Fact]
    public void An_empty_value_after_equals_is_kept_as_empty()
    {
        var cl = Parse("--server=");
        Assert.True(cl.Has("server"));
        Assert.Equal("", cl.Get("server"));
    }

    [Fact]
    public void Flags_are_present_without_a_value_and_absent_when_not_given()
    {
        var cl = Parse("--json", "KEY");
        Assert.True(cl.Has("json"));
        Assert.Null(cl.Get("json"));
        Assert.False(cl.Has("no-verify"));
        Assert.Equal(["KEY"], cl.Positionals);
    }

    [Fact]
    public void A_flag_given_a_value_is_a_usage_error()
    {
        var ex = Assert.Throws<UsageException>(() => Parse("--json=yes"));
        Assert.Equal("option --json takes no value", ex.Message);
    }

    [Fact]
    public void Double_dash_ends_options_so_later_dashed_words_are_positionals()
    {
        var cl = Parse("--json", "--", "--server", "--bogus", "-");
        Assert.Equal(["--server", "--bogus", "-"], cl.Positionals);
        Assert.False(cl.Has("server"));
    }

    [Fact]
    public void A_single_dash_is_a_positional()
    {
        var cl = Parse("KEY", "-");
        Assert.Equal(["KEY", "-"], cl.Positionals);
    }

    [Fact]
    public void The_last_occurrence_of_a_repeated_option_wins()
        => Assert.Equal("b", Parse("--server", "a", "--server", "b").Get("server"));

    [Fact]
    public void Get_with_a_fallback_returns_the_fallback_when_absent()
        => Assert.Equal("x", Parse().Get("server", "x"));

    [Fact]
    public void Int_rejects_values_outside_its_range_naming_the_option()
    {
        var ex = Assert.Throws<UsageException>(() => Parse("--port", "70000").Int("port", 1, 0, 65535));
        Assert.Contains("--port", ex.Message);
        Assert.Contains("70000", ex.Message);
        Assert.Throws<UsageException>(() => Parse("--port", "x").Int("port", 1));
        Assert.Equal(5, Parse("--port", "5").Int("port", 1, 0, 10));
        Assert.Equal(1, Parse().Int("port", 1));
    }

    [Fact]
    public void Size_turns_a_bad_size_into_a_usage_error_naming_the_option()
    {
        var ex = Assert.Throws<UsageException>(() => Parse("--server", "12xb").Size("server", 0));
        Assert.StartsWith("--server: ", ex.Message);
        Assert.Equal(3L << 20, Parse("--server", "3MiB").Size("server", 0));
        Assert.Equal(7, Parse().Size("server", 7));
    }

    [Fact]
    public void Double_parses_with_the_invariant_culture_and_rejects_non_numbers()
    {
        Assert.Equal(0.5, Parse("--port", "0.5").Double("port", 0));
        var ex = Assert.Throws<UsageException>(() => Parse("--port", "half").Double("port", 0));
        Assert.Contains("--port", ex.Message);
    }
}
