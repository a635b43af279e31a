/* The list of projects: a new one opens its page. */
import { api } from "../api.js";
import { formValues, showErrors } from "../dom.js";

const form = document.getElementById("project-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const project = await api("POST", "/api/projects/", formValues(form));
    window.location = `/projects/${project.id}/`;
  } catch (error) { showErrors(form, error); }
});
