// "Copy link": the page keeps its state in the query string, so the address bar is the view.
export default function ({ parentElement }) {
  const button = parentElement.querySelector(".rvl-button");
  const field = parentElement.querySelector(".rvl-url");
  const status = parentElement.querySelector(".rvl-status");
  button.onclick = async () => {
    const url = window.location.href;
    field.value = url;
    window.ropeCopiedLink = url;
    try {
      await navigator.clipboard.writeText(url);
      status.textContent = "Link copied: paste it anywhere to reopen this view.";
      field.hidden = true;
    } catch (err) {  // no clipboard permission (plain http on another host): let the user copy by hand
      field.hidden = false;
      field.select();
      status.textContent = "Select the link above and copy it (Ctrl+C).";
    }
  };
}
